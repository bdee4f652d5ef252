package relay

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// guardAdmin keeps web pages from driving the admin API through an
// operator's browser:
//   - a state-changing request (POST, DELETE, ...) that a browser marks as
//     cross-site (Sec-Fetch-Site, or an Origin other than the Host) is
//     refused with 403 (net/http's CrossOriginProtection);
//   - when the admin listener is a loopback address, a request whose Host
//     is not a loopback address or "localhost" is refused with 403: a page
//     whose own name resolves to 127.0.0.1 (DNS rebinding) would otherwise
//     be same-origin with the API and could read dead letters.
func guardAdmin(loopback bool, h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, errorBody("cross-origin request refused"))
	}))
	h = cop.Handler(h)
	if !loopback {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			writeJSON(w, http.StatusForbidden, errorBody("host not allowed: the admin listener answers loopback names only"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine by a
// loopback address or "localhost".
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
