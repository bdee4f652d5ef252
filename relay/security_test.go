package relay

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relay-dev/relay/sinks"
)

func TestRefusals(t *testing.T) {
	const own = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	tests := []struct {
		name          string
		listen, admin string
		token         string
		insecure      bool
		secret        string
		want          string // "" for no refusal; else a substring
	}{
		{name: "quick start on loopback", listen: "127.0.0.1:8080", admin: "127.0.0.1:9090", secret: DemoSecret},
		{name: "localhost and IPv6 loopback", listen: "localhost:8080", admin: "[::1]:9090", secret: DemoSecret},
		{name: "demo secret on every interface", listen: ":8080", admin: "127.0.0.1:9090", secret: DemoSecret,
			want: `sources.recall.secrets[0]: the quick-start's public demo secret is refused when server.listen (":8080") is not a loopback address`},
		{name: "demo secret on a public address", listen: "192.0.2.1:8080", admin: "127.0.0.1:9090", secret: DemoSecret,
			want: "sources.recall.secrets[0]:"},
		{name: "own secret on every interface", listen: ":8080", admin: "127.0.0.1:9090", secret: own},
		{name: "open admin without a token", listen: "127.0.0.1:8080", admin: ":9090", secret: own,
			want: `server.admin_token: required when server.admin_listen (":9090") is not a loopback address`},
		{name: "open admin with a token", listen: "127.0.0.1:8080", admin: ":9090", token: "t0ken", secret: own},
		{name: "open admin, insecure on purpose", listen: "127.0.0.1:8080", admin: "0.0.0.0:9090", insecure: true, secret: own},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{
				Server:  ServerConfig{Listen: tt.listen, AdminListen: tt.admin, AdminToken: sinks.Secret(tt.token), AllowInsecureAdmin: tt.insecure},
				Sources: map[string]SourceConfig{"recall": {Secrets: []sinks.Secret{sinks.Secret(tt.secret)}}},
			}
			err := Refusals(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got refusal %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want a refusal containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("refusal quotes the secret: %v", err)
			}
		})
	}
}

// TestServeRefusesAndReloadKeepsConfig: Start refuses an unsafe config
// naming the key; a reload to one is refused and the running config stays.
func TestServeRefusesAndReloadKeepsConfig(t *testing.T) {
	unsafe := strings.Replace(testServerConfig(t.TempDir(), twoRules), `admin_listen: "127.0.0.1:0"`, `admin_listen: "0.0.0.0:0"`, 1)
	tr := &testRegistry{}
	path := writeConfig(t, unsafe)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: []string{}, Logger: discardLogger()})
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "server.admin_token: required") {
		t.Fatalf("start: got %v, want a refusal naming server.admin_token", err)
	}

	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	h.rewriteConfig(strings.Replace(testServerConfig(t.TempDir(), twoRules), `listen: "127.0.0.1:0"`, `listen: ":0"`, 1))
	if err := h.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "sources.recall.secrets[0]: the quick-start's public demo secret") {
		t.Fatalf("reload: got %v, want a refusal naming the demo secret", err)
	}
	h.mustAccept("msg_after_refused_reload", sampleBody)
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// common name, and returns the cert and key paths and the certificate.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// tlsClient trusts only the given certificates.
func tlsClient(certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
}

// TestTLSListenersAndReload serves ingest and admin over TLS with a
// certificate the test makes, then replaces the files and reloads: new
// handshakes get the new certificate.
func TestTLSListenersAndReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := writeCert(t, dir, "first")
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "  shutdown_grace: 5s\n",
		fmt.Sprintf("  shutdown_grace: 5s\n  tls: {cert_file: %[1]s, key_file: %[2]s}\n  admin_tls: {cert_file: %[1]s, key_file: %[2]s}\n", certFile, keyFile), 1)
	h := startHarness(t, nil, yaml)

	body := sampleBody
	now := time.Now()
	sig, _ := h.wh.Sign("msg_tls", now, []byte(body))
	req, _ := http.NewRequest(http.MethodPost, "https://"+h.srv.IngestAddr()+"/webhooks/recall", strings.NewReader(body))
	req.Header.Set("svix-id", "msg_tls")
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := tlsClient(first).Do(req)
	if err != nil {
		t.Fatalf("ingest over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ingest over TLS: got %d, want 200", resp.StatusCode)
	}
	if resp, err := http.Post("http://"+h.srv.IngestAddr()+"/webhooks/recall", "application/json", strings.NewReader(body)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP to the TLS listener was accepted")
		}
	}
	peerCN := func(addr string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	resp, err = tlsClient(first).Get("https://" + h.srv.AdminAddr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin over TLS: %v %v", resp, err)
	}
	resp.Body.Close()

	// An open connection from before the reload keeps working.
	keep := tlsClient(first)
	if resp, err := keep.Get("https://" + h.srv.AdminAddr() + "/healthz"); err == nil {
		io.Copy(io.Discard, resp.Body) // read to the end: the connection stays open for reuse
		resp.Body.Close()
	}
	_, _, second := writeCert(t, dir, "second")
	if err := h.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := peerCN(h.srv.IngestAddr()); got != "second" {
		t.Errorf("ingest certificate after reload: got %q, want second", got)
	}
	if got := peerCN(h.srv.AdminAddr()); got != "second" {
		t.Errorf("admin certificate after reload: got %q, want second", got)
	}
	resp, err = keep.Get("https://" + h.srv.AdminAddr() + "/healthz")
	if err != nil {
		t.Errorf("a connection opened before the reload: %v", err)
	} else {
		resp.Body.Close()
	}
	if resp, err := tlsClient(second).Get("https://" + h.srv.AdminAddr() + "/healthz"); err != nil {
		t.Errorf("new certificate not trusted by a new client: %v", err)
	} else {
		resp.Body.Close()
	}

	// A reload whose certificate cannot be read fails and keeps the old one.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "server.tls:") {
		t.Errorf("reload with a broken key: got %v, want an error naming server.tls", err)
	}
	if got := peerCN(h.srv.IngestAddr()); got != "second" {
		t.Errorf("certificate after a failed reload: got %q, want second", got)
	}
}

// TestAllowIPs: the relay's own address (127.0.0.1) is outside the
// allow-list and gets 403, counted; through a trusted proxy, the
// X-Forwarded-For address decides.
func TestAllowIPs(t *testing.T) {
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "    secrets: [",
		"    allow_ips: [10.0.0.0/8]\n    trusted_proxies: [127.0.0.1/32]\n    secrets: [", 1)
	h := startHarness(t, nil, yaml)
	post := func(xff string) int {
		t.Helper()
		now := time.Now()
		sig, _ := h.wh.Sign("msg_ip_"+xff, now, []byte(sampleBody))
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.srv.IngestAddr()+"/webhooks/recall", strings.NewReader(sampleBody))
		req.Header.Set("svix-id", "msg_ip_"+xff)
		req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("svix-signature", sig)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		xff  string
		want int
	}{
		{"", http.StatusForbidden},
		{"192.0.2.7", http.StatusForbidden},
		{"10.1.2.3", http.StatusOK},
		{"10.1.2.3, 192.0.2.7", http.StatusForbidden},
	} {
		if got := post(tt.xff); got != tt.want {
			t.Errorf("X-Forwarded-For %q: got %d, want %d", tt.xff, got, tt.want)
		}
	}
	if m := h.scrape(); !strings.Contains(m, `relay_ingest_rejected_total{reason="address",source="recall"} 3`) {
		t.Errorf("want 3 address rejections counted; metrics:\n%s", grepLines(m, "relay_ingest_rejected_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAnsweredBeforeTheBody: a request whose headers already fail is
// answered while its declared body has not arrived.
func TestAnsweredBeforeTheBody(t *testing.T) {
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "    secrets: [",
		"    allow_ips: [10.0.0.0/8]\n    secrets: [", 1)
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	closed := startHarness(t, nil, yaml)
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	for _, tt := range []struct {
		name    string
		addr    string
		headers string
		want    int
	}{
		{"no signature headers", h.srv.IngestAddr(), "", 401},
		{"timestamp outside tolerance", h.srv.IngestAddr(), "svix-id: m1\r\nsvix-timestamp: " + old + "\r\nsvix-signature: v1,x\r\n", 401},
		{"timestamp beyond any clock", h.srv.IngestAddr(), "svix-id: m1\r\nsvix-timestamp: " + strconv.FormatInt(math.MinInt64, 10) + "\r\nsvix-signature: v1,x\r\n", 401},
		{"declared body over the limit", h.srv.IngestAddr(), "svix-id: m1\r\nsvix-timestamp: " + strconv.FormatInt(time.Now().Unix(), 10) + "\r\nsvix-signature: v1,x\r\n", 413},
		{"address not allowed", closed.srv.IngestAddr(), "", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			length := 1000
			if tt.want == 413 {
				length = 2 << 20
			}
			fmt.Fprintf(conn, "POST /webhooks/recall HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n", length, tt.headers)
			// No body is sent: the answer must come anyway.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestWithinTolerance(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tt := range []struct {
		sec  int64
		want bool
	}{
		{now.Unix(), true},
		{now.Unix() - 300, true},
		{now.Unix() + 300, true},
		{now.Unix() - 301, false},
		{now.Unix() + 301, false},
		{math.MaxInt64, false},
		{math.MinInt64, false},
		{math.MaxInt64 / 1_000_000_000, false},
		{-math.MaxInt64 / 1_000_000_000, false},
	} {
		if got := withinTolerance(tt.sec, now, 5*time.Minute); got != tt.want {
			t.Errorf("withinTolerance(%d): got %v, want %v", tt.sec, got, tt.want)
		}
	}
}

// TestBodyAtTheLimit: a body of exactly max_body_bytes is accepted, and
// dead-lettered whole; one byte more is 413.
func TestBodyAtTheLimit(t *testing.T) {
	tr := &testRegistry{}
	tr.set("a", func(context.Context, sinks.Delivery) error { return sinks.Permanent(fmt.Errorf("refused")) })
	h := startHarness(t, tr, testServerConfig(t.TempDir(), `
rules:
  - name: all
    when: "true"
    sinks: [a]
`))
	limit := h.srv.Config().Server.MaxBodyBytes
	prefix := `{"event":"transcript.failed","pad":"`
	body := prefix + strings.Repeat("x", int(limit)-len(prefix)-2) + `"}`
	if int64(len(body)) != limit {
		t.Fatalf("body of %d bytes, want %d", len(body), limit)
	}
	h.mustAccept("msg_at_limit", body)
	if code, _ := h.post("msg_over_limit", body[:len(body)-2]+`x"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("one byte over: got %d, want 413", code)
	}
	var dl DeadLetter
	eventually(t, 10*time.Second, "the dead letter", func() bool {
		dls := h.deadLetters("a")
		if len(dls) == 0 {
			return false
		}
		return h.admin(http.MethodGet, "/api/v1/dlq/"+strconvU(dls[0].ID), &dl) == 200
	})
	if string(dl.Payload) != body {
		t.Errorf("dead letter payload: %d bytes, want the %d-byte body intact", len(dl.Payload), len(body))
	}
}

// TestAdminRefusesBrowsers: a cross-site request and a foreign Host
// (DNS rebinding) cannot drive the admin API.
func TestAdminRefusesBrowsers(t *testing.T) {
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	do := func(method, host string, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+h.srv.AdminAddr()+"/-/reload", nil)
		if method == http.MethodGet {
			req.URL.Path = "/api/v1/dlq"
		}
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name   string
		method string
		host   string
		hdr    map[string]string
		want   int
	}{
		{"curl", http.MethodPost, "", nil, 200},
		{"localhost by name", http.MethodPost, "localhost:9090", nil, 200},
		{"cross-site POST (Sec-Fetch-Site)", http.MethodPost, "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site POST (Origin)", http.MethodPost, "", map[string]string{"Origin": "https://evil.example"}, 403},
		{"same-origin POST", http.MethodPost, "", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"rebinding: a foreign Host", http.MethodGet, "evil.example:9090", nil, 403},
	} {
		if got := do(tt.method, tt.host, tt.hdr); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
}

// idleConnections opens n connections to addr, each sending a signed
// header that declares a body of declared bytes and then nothing, and
// returns them once the relay has read every header (its ingest requests
// counter is not touched: they are still being read).
func idleConnections(t testing.TB, h *harness, n, declared int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	now := time.Now()
	sig, _ := h.wh.Sign("msg_idle", now, []byte(sampleBody))
	header := fmt.Sprintf("POST /webhooks/recall HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: %d\r\nsvix-id: msg_idle\r\nsvix-timestamp: %d\r\nsvix-signature: %s\r\n\r\n",
		declared, now.Unix(), sig)
	for range n {
		c, err := net.Dial("tcp", h.srv.IngestAddr())
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		if _, err := io.WriteString(c, header); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// TestIdleConnectionsHoldLittleMemory: 5,000 connections, each declaring
// a 1 MiB body and sending none of it, move the relay's heap by less than
// 50 MB (docs/benchmarks.md has the figure).
func TestIdleConnectionsHoldLittleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections")
	}
	h := startHarness(t, nil, testServerConfig(t.TempDir(), twoRules))
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	conns := idleConnections(t, h, 5000, 1<<20)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Wait until the server has read every header: each request is then
	// parked in the handler, reading its body.
	// The first server.max_connections are accepted and parked reading
	// their bodies; the rest wait in the kernel's accept queue.
	accepted := int64(min(len(conns), h.srv.Config().Server.MaxConnections))
	eventually(t, 30*time.Second, "the accepted connections' handlers reading their bodies", func() bool {
		return h.srv.ingest.reading.Load() == accepted
	})
	grew := (float64(heap()) - float64(before)) / (1 << 20) // it may shrink: background work settles
	t.Logf("5,000 idle connections each declaring 1 MiB (%d accepted): heap grew %.1f MiB (%.1f KiB per accepted connection)", accepted, grew, grew*1024/float64(accepted))
	if grew >= 50 {
		t.Errorf("heap grew %.1f MiB, want under 50", grew)
	}
}

// TestMaxConnections: past server.max_connections a request waits to be
// accepted, and is served once a connection closes.
func TestMaxConnections(t *testing.T) {
	h := startHarness(t, nil, strings.Replace(testServerConfig(t.TempDir(), twoRules), "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  max_connections: 2\n", 1))
	idle := idleConnections(t, h, 2, 1000)
	eventually(t, 10*time.Second, "two connections parked", func() bool { return h.srv.ingest.reading.Load() == 2 })
	done := make(chan int, 1)
	go func() {
		code, _ := h.post("msg_waits", sampleBody)
		done <- code
	}()
	select {
	case code := <-done:
		t.Fatalf("a third connection was served (%d) while two held the limit", code)
	case <-time.After(200 * time.Millisecond): // it waits, as it should
	}
	idle[0].Close()
	select {
	case code := <-done:
		if code != 200 {
			t.Errorf("got %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request was not served after a connection closed")
	}
	idle[1].Close()
}
