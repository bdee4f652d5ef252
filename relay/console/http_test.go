package console_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/relay-dev/relay/relay/console"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, url string, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestConsoleHTTP checks the console's auth over plain HTTP against a real
// relay: the login form, its cookie on the API, cross-site refusals.
func TestConsoleHTTP(t *testing.T) {
	r := startRelay(t, testToken)
	form := func(token string) string { return url.Values{"token": {token}, "next": {"/rules"}}.Encode() }
	formHeader := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

	resp, _ := do(t, "GET", r.admin+"/dead-letters", "", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fdead-letters" {
		t.Fatalf("a page without a session: %d %q, want 303 to the login form", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, "POST", r.admin+"/login", form("wrong"), formHeader); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("a wrong token: %d with cookies %v, want 401 and none", resp.StatusCode, resp.Cookies())
	}

	resp, _ = do(t, "POST", r.admin+"/login", form(testToken), formHeader)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/rules" {
		t.Fatalf("login: %d %q, want 303 to /rules", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || strings.Contains(session.Value, testToken) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, without the token", session)
	}
	withCookie := http.Header{"Cookie": {session.String()}}

	tests := []struct {
		name, method, path string
		header             http.Header
		want               int
	}{
		{"API with the cookie", "GET", "/api/v1/overview", withCookie, http.StatusOK},
		{"API with the bearer token", "GET", "/api/v1/rules", http.Header{"Authorization": {"Bearer " + testToken}}, http.StatusOK},
		{"API without either", "GET", "/api/v1/config", nil, http.StatusUnauthorized},
		{"API with a forged cookie", "GET", "/api/v1/events", http.Header{"Cookie": {console.CookieName + "=v1.99999999999.AAAA"}}, http.StatusUnauthorized},
		{"a page with the cookie", "GET", "/config", withCookie, http.StatusOK},
		{"same-origin POST with the cookie", "POST", "/api/v1/dlq/replay", merge(withCookie, http.Header{"Sec-Fetch-Site": {"same-origin"}}), http.StatusOK},
		{"cross-site POST with the cookie", "POST", "/api/v1/dlq/replay", merge(withCookie, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden},
		{"same-site POST from another port", "DELETE", "/api/v1/dlq", merge(withCookie, http.Header{"Sec-Fetch-Site": {"same-site"}}), http.StatusForbidden},
		{"POST from another Origin", "POST", "/-/reload", merge(withCookie, http.Header{"Origin": {"http://evil.example"}}), http.StatusForbidden},
		{"cross-site login", "POST", "/login", merge(formHeader, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden},
		{"cross-site logout", "POST", "/logout", merge(withCookie, http.Header{"Sec-Fetch-Site": {"cross-site"}}), http.StatusForbidden},
		{"a rebinding Host", "GET", "/", http.Header{"Host": {"evil.example"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := ""
			if tt.path == "/login" {
				body = form(testToken)
			}
			req, _ := http.NewRequest(tt.method, r.admin+tt.path, strings.NewReader(body))
			for k, vs := range tt.header {
				req.Header[k] = vs
			}
			if h := tt.header.Get("Host"); h != "" {
				req.Host = h
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.want)
			}
		})
	}

	resp, _ = do(t, "GET", r.admin+"/", "", withCookie)
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("a page lacks %s", h)
		}
	}
	resp, _ = do(t, "POST", r.admin+"/logout", "", withCookie)
	if c := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("logout: %d cookies %v, want 303 and the cookie removed", resp.StatusCode, c)
	}
}

// TestConsoleWithoutToken: with no admin token (loopback admin listener)
// the console and its API need no login, and /login goes to the console.
func TestConsoleWithoutToken(t *testing.T) {
	r := startRelay(t, "")
	if resp, body := do(t, "GET", r.admin+"/", "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "<h1>Overview</h1>") || strings.Contains(body, "Log out") {
		t.Fatalf("GET /: %d, want the overview without a logout button:\n%s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", r.admin+"/api/v1/overview", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("overview API: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", r.admin+"/login", "", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /login: %d %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, "GET", r.admin+"/nope", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown page: %d, want 404", resp.StatusCode)
	}
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, vs := range h {
			out[k] = append(out[k], vs...)
		}
	}
	return out
}
