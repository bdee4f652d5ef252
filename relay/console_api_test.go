package relay

import (
	"encoding/json"
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
	b, err := json.Marshal(ConfigView(cfg))
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
