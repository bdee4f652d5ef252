package relay

import (
	"net/http"
	"strings"
	"testing"
)

func TestAddrPolicy(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		trusted []string
		remote  string
		xff     []string
		want    bool
	}{
		{name: "no allow-list accepts anyone", remote: "203.0.113.9:5000", want: true},
		{name: "inside the allow-list", allow: []string{"10.0.0.0/8"}, remote: "10.1.2.3:5000", want: true},
		{name: "outside the allow-list", allow: []string{"10.0.0.0/8"}, remote: "192.0.2.1:5000", want: false},
		{name: "a bare address", allow: []string{"192.0.2.1"}, remote: "192.0.2.1:1", want: true},
		{name: "IPv6 prefix", allow: []string{"2001:db8::/32"}, remote: "[2001:db8::5]:443", want: true},
		{name: "IPv4-mapped IPv6 peer", allow: []string{"10.0.0.0/8"}, remote: "[::ffff:10.0.0.1]:1", want: true},
		{name: "X-Forwarded-For from an untrusted peer is ignored", allow: []string{"10.0.0.0/8"},
			remote: "192.0.2.1:1", xff: []string{"10.0.0.1"}, want: false},
		{name: "X-Forwarded-For from a trusted proxy is believed", allow: []string{"10.0.0.0/8"},
			trusted: []string{"127.0.0.1/32"}, remote: "127.0.0.1:1", xff: []string{"10.0.0.1"}, want: true},
		{name: "the rightmost untrusted hop is the client", allow: []string{"10.0.0.0/8"},
			trusted: []string{"127.0.0.1/32"}, remote: "127.0.0.1:1", xff: []string{"10.0.0.1, 192.0.2.7"}, want: false},
		{name: "a forged leftmost hop does not help", allow: []string{"10.0.0.0/8"},
			trusted: []string{"127.0.0.1/32", "172.16.0.0/12"}, remote: "127.0.0.1:1",
			xff: []string{"10.9.9.9", "192.0.2.7, 172.16.0.2"}, want: false},
		{name: "several proxies", allow: []string{"10.0.0.0/8"},
			trusted: []string{"127.0.0.1/32", "172.16.0.0/12"}, remote: "127.0.0.1:1",
			xff: []string{"10.2.2.2, 172.16.0.2"}, want: true},
		{name: "a trusted proxy without the header is the client", allow: []string{"10.0.0.0/8"},
			trusted: []string{"127.0.0.1/32"}, remote: "127.0.0.1:1", want: false},
		{name: "malformed X-Forwarded-For is refused", allow: []string{"0.0.0.0/0"},
			trusted: []string{"127.0.0.1/32"}, remote: "127.0.0.1:1", xff: []string{"not-an-ip"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap, errs := newAddrPolicy("sources.s", tt.allow, tt.trusted)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			r, _ := http.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ap.allows(r); got != tt.want {
				t.Errorf("allows: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAddrPolicyErrors(t *testing.T) {
	_, errs := newAddrPolicy("sources.s", []string{"10.0.0.0/8", "nonsense"}, []string{"1.2.3.4/99"})
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := `sources.s.allow_ips[1]: invalid address or CIDR prefix "nonsense"` + "\n" +
		`sources.s.trusted_proxies[0]: invalid address or CIDR prefix "1.2.3.4/99"`
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}
