package relay

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// DemoSecret is the quick-start's signing secret. It is public (it is in
// the README and configs/relay.yaml), so anyone can sign with it.
const DemoSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Refusals reports the settings `relay serve` refuses to run with, one
// error per problem, each naming its config path; nil when there are none.
// They are valid configs (relay test and backtest use them), but serving
// one would expose the relay:
//   - an admin_listen that is not a loopback address without an admin_token,
//     unless allow_insecure_admin is true: the admin API reads dead letters,
//     purges, replays and reloads;
//   - the public demo secret on a source while listen is not a loopback
//     address: anyone could sign events for it.
func Refusals(cfg *Config) error {
	var errs []error
	s := cfg.Server
	if !isLoopbackListen(s.AdminListen) && s.AdminToken == "" && !s.AllowInsecureAdmin {
		errs = append(errs, fmt.Errorf("server.admin_token: required when server.admin_listen (%q) is not a loopback address; set one (RELAY_ADMIN_TOKEN), listen on 127.0.0.1, or set server.allow_insecure_admin: true", s.AdminListen))
	}
	if !isLoopbackListen(s.Listen) {
		for _, name := range slices.Sorted(maps.Keys(cfg.Sources)) {
			for i, sec := range cfg.Sources[name].Secrets {
				if sec.Reveal() == DemoSecret {
					errs = append(errs, fmt.Errorf("sources.%s.secrets[%d]: the quick-start's public demo secret is refused when server.listen (%q) is not a loopback address; set your endpoint's signing secret (RECALL_WEBHOOK_SECRET in the quick-start config)", name, i, s.Listen))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// isLoopbackListen reports whether a listen address ("127.0.0.1:9090",
// "[::1]:9090", "localhost:9090") accepts connections from this machine
// only. An empty host (":9090") is every interface.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
