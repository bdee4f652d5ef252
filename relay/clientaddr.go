package relay

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// addrPolicy decides which client addresses a source accepts. The client
// is the connection's peer, unless that peer is a trusted proxy: then it is
// the rightmost address in X-Forwarded-For that is not a trusted proxy
// (each proxy appends the address it received the request from, so only
// the part a trusted proxy wrote can be believed). The zero policy accepts
// every address.
type addrPolicy struct {
	allow   []netip.Prefix // empty: every address
	trusted []netip.Prefix // peers whose X-Forwarded-For is believed
}

// newAddrPolicy parses the source's allow_ips and trusted_proxies; p is the
// source's config path, for errors.
func newAddrPolicy(p string, allow, trusted []string) (addrPolicy, []error) {
	var ap addrPolicy
	var errs []error
	ap.allow, errs = parsePrefixes(p+".allow_ips", allow)
	var terrs []error
	ap.trusted, terrs = parsePrefixes(p+".trusted_proxies", trusted)
	return ap, append(errs, terrs...)
}

// parsePrefixes reads CIDR prefixes; a bare address is a prefix of one
// address.
func parsePrefixes(p string, list []string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range list {
		s = strings.TrimSpace(s)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: invalid address or CIDR prefix %q", p, i, s))
				continue
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, pfx.Masked())
	}
	return out, errs
}

// active reports whether the policy restricts anything.
func (ap addrPolicy) active() bool { return len(ap.allow) > 0 }

// client returns the address the request came from, per the policy's
// trusted proxies.
func (ap addrPolicy) client(r *http.Request) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, errors.New("unreadable peer address")
	}
	peer = peer.Unmap()
	if !contains(ap.trusted, peer) {
		return peer, nil
	}
	// From a trusted proxy: walk X-Forwarded-For from the right, past the
	// trusted proxies.
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return netip.Addr{}, errors.New("malformed X-Forwarded-For")
		}
		a = a.Unmap()
		if !contains(ap.trusted, a) {
			return a, nil
		}
		peer = a
	}
	// Every hop is a trusted proxy: the leftmost is the client.
	return peer, nil
}

// allows reports whether the request's client may use the source.
func (ap addrPolicy) allows(r *http.Request) bool {
	if !ap.active() {
		return true
	}
	a, err := ap.client(r)
	return err == nil && contains(ap.allow, a)
}

// forwardedFor lists the addresses of every X-Forwarded-For header, in
// order, without ports or brackets.
func forwardedFor(h http.Header) []string {
	var out []string
	for _, v := range h.Values("X-Forwarded-For") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if host, _, err := net.SplitHostPort(part); err == nil {
				part = host
			}
			out = append(out, strings.Trim(part, "[]"))
		}
	}
	return out
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
