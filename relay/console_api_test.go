package relay

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestConfigViewRedacts: the console's config view never shows a secret,
// whatever key or URL carries it, and still shows what is not secret.
func TestConfigViewRedacts(t *testing.T) {
	yaml := `
server:
  admin_token: admin-token-s3cr3t-value
storage:
  url: nats://natsuser:nats-pa55word@127.0.0.1:4222
sources:
  recall:
    secrets: [` + testSecret + `]
sinks:
  alerts:
    type: slack
    webhook_url: https://hooks.slack.example/services/T000/B000/slackhookSECRET1
  bot:
    type: slack
    token: xoxb-slack-bot-token-SECRET2
    channel: "#ops"
  api:
    type: http
    url: https://apiuser:api-pa55word@api.example/hooks/pathSECRET3?key=querySECRET4
    headers:
      Authorization: Bearer headerSECRET5
      X-Api-Key: headerSECRET6
    signing_secret: whsec_c2lnbmluZ1NFQ1JFVDc=
rules:
  - name: all
    when: "true"
    sinks: [alerts, bot, api]
`
	cfg, err := LoadConfig(writeConfig(t, yaml), LoadOptions{Environ: []string{}, Registry: realRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(configView(cfg))
	if err != nil {
		t.Fatal(err)
	}
	view := string(b)
	for _, secret := range []string{"admin-token-s3cr3t-value", "natsuser", "nats-pa55word", strings.TrimPrefix(testSecret, "whsec_"),
		"slackhookSECRET1", "SECRET2", "apiuser", "api-pa55word", "pathSECRET3", "querySECRET4", "headerSECRET5", "headerSECRET6", "c2lnbmluZ1NFQ1JFVDc"} {
		if strings.Contains(view, secret) {
			t.Errorf("the config view shows %q:\n%s", secret, view)
		}
	}
	for _, shown := range []string{`"channel":"#ops"`, `"url":"https://xxxxx@api.example/[redacted]?[redacted]"`, `"webhook_url":"[redacted]"`,
		`"Authorization":"[redacted]"`, `"admin_token":"[redacted]"`, `"url":"nats://xxxxx@127.0.0.1:4222"`, `"when":"true"`} {
		if !strings.Contains(view, shown) {
			t.Errorf("the config view lacks %s:\n%s", shown, view)
		}
	}
}

// TestConsoleRoutes: the overview, rules, route and config routes answer
// from the running relay, and the config route reports a failed reload
// with its problems until a reload succeeds.
func TestConsoleRoutes(t *testing.T) {
	good := testServerConfig(t.TempDir(), `
rules:
  - name: failures
    when: status == "failed"
    sinks: [a]
`)
	h := startHarness(t, nil, good)
	h.mustAccept("msg_1", sampleBody)

	var ov Overview
	if code := h.admin("GET", "/api/v1/overview", &ov); code != 200 || ov.Accepted != 1 || len(ov.Sinks) != 2 || ov.Sinks[0].Name != "a" {
		t.Fatalf("overview: %d %+v", code, ov)
	}
	var rs struct {
		Rules []RuleOverview `json:"rules"`
	}
	if code := h.admin("GET", "/api/v1/rules", &rs); code != 200 || len(rs.Rules) != 1 || rs.Rules[0].Name != "failures" || rs.Rules[0].Matched != 1 {
		t.Fatalf("rules: %d %+v", code, rs)
	}

	route := func(body string) (int, DryRunResult) {
		resp, err := http.Post("http://"+h.srv.AdminAddr()+"/api/v1/route?source=recall", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res DryRunResult
		_ = json.NewDecoder(resp.Body).Decode(&res)
		return resp.StatusCode, res
	}
	if code, res := route(sampleBody); code != 200 || !slices.Equal(res.Rules, []string{"failures"}) || len(res.Deliveries) != 1 || res.Deliveries[0].Sink != "a" {
		t.Fatalf("route: %d %+v", code, res)
	}
	if code, _ := route(`[1]`); code != 400 {
		t.Fatalf("route of a non-object: %d, want 400", code)
	}

	type lastLoad struct {
		OK     bool     `json:"ok"`
		Errors []string `json:"errors"`
	}
	var cv struct {
		LastLoad lastLoad `json:"last_load"`
	}
	h.rewriteConfig(strings.Replace(good, `sinks: [a]`, `sinks: [nope]`, 1))
	if err := h.srv.Reload(t.Context()); err == nil {
		t.Fatal("a reload naming an unknown sink succeeded")
	}
	if code := h.admin("GET", "/api/v1/config", &cv); code != 200 || cv.LastLoad.OK || len(cv.LastLoad.Errors) == 0 || !strings.Contains(cv.LastLoad.Errors[0], "nope") {
		t.Fatalf("config after a failed reload: %d %+v", code, cv)
	}
	h.rewriteConfig(good)
	if err := h.srv.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	cv.LastLoad = lastLoad{}
	if code := h.admin("GET", "/api/v1/config", &cv); code != 200 || !cv.LastLoad.OK || len(cv.LastLoad.Errors) != 0 {
		t.Fatalf("config after a good reload: %d %+v", code, cv)
	}
}
