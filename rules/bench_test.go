package rules

import (
	"fmt"
	"testing"
	"time"
)

// benchEvent is a typical ~1 KiB transcript.failed event with realistic
// metadata on every reference.
var benchEvent = []byte(`{
  "event": "transcript.failed",
  "data": {
    "data": {
      "code": "failed",
      "sub_code": "zoom_captions_failure",
      "updated_at": "2025-03-19T17:44:06.535897Z"
    },
    "transcript": {
      "id": "8d30fcbd-c845-4ae3-8314-006773841121",
      "metadata": {"pipeline": "default", "language": "en-US"}
    },
    "recording": {
      "id": "05cf3a8b-8f61-4dd2-8819-c893d1d9ce45",
      "metadata": {
        "user_id": "24680",
        "meeting_title": "Quarterly business review — EMEA accounts",
        "calendar_event_id": "c2f1d7b0-8a5e-4e0c-9a51-3f1f0c6b2d11",
        "team": "customer-success"
      }
    },
    "bot": {
      "id": "d9e964ff-64ae-4db9-a1b2-4e001bc327d3",
      "metadata": {
        "customer_id": "cus_1",
        "workspace": "acme-eng",
        "source": "calendar",
        "plan": "enterprise",
        "region": "eu-west-1",
        "requested_by": "jane.doe@example.com",
        "crm_opportunity": "006Hs00001XyZabCDE",
        "notes": "Recorded for the account team; share transcript with the AE within 24h."
      }
    }
  }
}`)

// benchMeta is the Meta used by benchmarks.
var benchMeta = Meta{Source: "recall-prod", MsgID: "msg_2mZ0QkR7", ReceivedAt: time.Unix(1742406246, 0).UTC()}

// typicalSpecs returns n rules cycling through typical expressions, none of
// which stops evaluation.
func typicalSpecs(n int) []Spec {
	whens := []string{
		`event == "transcript.failed" && sub_code startsWith "zoom_"`,
		`status == "done"`,
		`bot.metadata.customer_id == "cus_1"`,
		`object in ["transcript", "recording"]`,
	}
	specs := make([]Spec, n)
	for i := range specs {
		specs[i] = Spec{
			Name:  fmt.Sprintf("rule-%d", i),
			When:  whens[i%len(whens)],
			Sinks: []string{fmt.Sprintf("sink-%d", i%5)},
		}
	}
	return specs
}

func BenchmarkNewEnv(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchEvent)))
	for b.Loop() {
		if _, err := NewEnv(benchEvent, benchMeta); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEval(b *testing.B) {
	env, err := NewEnv(benchEvent, benchMeta)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set, err := Compile(typicalSpecs(n), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				res := set.Eval(env)
				if len(res.Errors) > 0 {
					b.Fatal(res.Errors[0])
				}
			}
		})
	}
}

// BenchmarkEvalNoMatch evaluates typicalSpecs over an event none of them
// matches: the common case at ingest for a busy source with narrow rules.
func BenchmarkEvalNoMatch(b *testing.B) {
	body := []byte(`{"event": "bot.status_change", "data": {"bot": {"id": "d9e964ff", "metadata": {"customer_id": "cus_2"}}}}`)
	env, err := NewEnv(body, benchMeta)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set, err := Compile(typicalSpecs(n), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				res := set.Eval(env)
				if len(res.Rules) > 0 || len(res.Errors) > 0 {
					b.Fatalf("matched %v, errors %v", res.Rules, res.Errors)
				}
			}
		})
	}
}
