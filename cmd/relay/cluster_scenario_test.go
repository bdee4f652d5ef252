package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

// ingestAddrs are the ingest addresses of a set of relays, as a load
// balancer in front of them knows them: a restarted relay gets a new one.
type ingestAddrs struct {
	mu    sync.Mutex
	addrs []string
}

func newIngestAddrs(relays []*relayProcess) *ingestAddrs {
	a := &ingestAddrs{}
	for _, p := range relays {
		a.addrs = append(a.addrs, p.ingest)
	}
	return a
}

func (a *ingestAddrs) set(i int, addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addrs[i] = addr
}

// url is the webhook URL of relay i (modulo their number).
func (a *ingestAddrs) url(i int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return "http://" + a.addrs[i%len(a.addrs)] + "/webhooks/recall"
}

func (a *ingestAddrs) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.addrs)
}

// recordingScenario plays the lives of a number of recordings over all the
// relays while the fault test runs, the way Svix would send them: each
// event to one relay, and again to another until one acknowledges it. A
// recording's processing and done events go at once to two relays; for
// two recordings in three a transcript follows, once the done event is
// acknowledged, on a third relay. Its events go to a thread_by Slack sink
// (one thread per recording, whichever relays deliver them) and its done
// event starts an expectation timer that only the transcript settles (so
// one recording in three is missed once).
type recordingScenario struct {
	relays *ingestAddrs
	secret string
	within time.Duration // the expectation's
	client *http.Client

	mu      sync.Mutex
	acked   []string        // svix ids acknowledged
	sent    map[string]int  // events acknowledged per recording
	missing []string        // recordings never sent a transcript
	inTime  map[string]bool // recordings whose transcript was acknowledged before their timer could run out
	failed  []error
}

// scenarioConfig is the part of the fault test's config the scenario
// needs: its Slack sink (at slackURL), its rule and its expectation.
func scenarioConfig(slackURL string, within time.Duration) (sinks, rules, expectations string) {
	sinks = fmt.Sprintf(`
  oncall-slack:
    type: slack
    token: xoxb-test
    channel: C0ONCALL
    api_url: %s
    thread_by: recording.id
    rate: ""
    concurrency: 4
`, slackURL)
	rules = `
  - name: recording-threads
    when: object != "relay" && recording.id startsWith "rec-"
    sinks: [oncall-slack]
`
	expectations = fmt.Sprintf(`
expectations:
  - name: transcript-arrives
    after: event == "recording.done" && recording.id startsWith "rec-"
    expect: object == "transcript"
    key: recording.id
    within: %s
`, within)
	return sinks, rules, expectations
}

func newRecordingScenario(relays *ingestAddrs, secret string, within time.Duration) *recordingScenario {
	return &recordingScenario{
		relays: relays, secret: secret, within: within,
		client: &http.Client{Timeout: 5 * time.Second},
		sent:   map[string]int{}, inTime: map[string]bool{},
	}
}

// run plays n recordings, one starting every interval, and returns once
// every event is acknowledged or given up on.
func (s *recordingScenario) run(n int, interval time.Duration) {
	var wg sync.WaitGroup
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range n {
		wg.Go(func() { s.recording(i) })
		<-tick.C
	}
	wg.Wait()
}

// recording plays the life of recording i.
func (s *recordingScenario) recording(i int) {
	rec := fmt.Sprintf("rec-%03d", i)
	event := func(object, status string, minute int) string {
		media := ""
		if object != "recording" {
			media = fmt.Sprintf(`, %q: {"id": "tr-%03d", "metadata": {}}`, object, i)
		}
		return fmt.Sprintf(`{"event": "%s.%s", "data": {"data": {"code": %q, "sub_code": null, "updated_at": "2026-11-30T12:%02d:00Z"}, "recording": {"id": %q, "metadata": {}}, "bot": {"id": "bot-%03d", "metadata": {}}%s}}`,
			object, status, status, minute, rec, i, media)
	}
	var both sync.WaitGroup
	both.Go(func() { s.send(rec, i, fmt.Sprintf("msg_%s_processing", rec), event("recording", "processing", 1)) })
	doneSent := time.Now()
	doneOK := false
	both.Go(func() { doneOK = s.send(rec, i+1, fmt.Sprintf("msg_%s_done", rec), event("recording", "done", 2)) })
	both.Wait()
	if !doneOK {
		return
	}
	if i%3 == 0 {
		s.mu.Lock()
		s.missing = append(s.missing, rec)
		s.mu.Unlock()
		return
	}
	if s.send(rec, i+2, fmt.Sprintf("msg_%s_transcript", rec), event("transcript", "done", 3)) {
		// The timer's deadline is the done event's reception plus within,
		// and its reception came after doneSent.
		s.mu.Lock()
		s.inTime[rec] = time.Since(doneSent) < s.within
		s.mu.Unlock()
	}
}

// send posts one event to relay first, then to the next ones, until one
// acknowledges it (within a minute), and records it.
func (s *recordingScenario) send(rec string, first int, id, body string) bool {
	giveUp := time.Now().Add(time.Minute)
	for attempt := 0; ; attempt++ {
		err := postSigned(s.client, s.relays.url(first+attempt), s.secret, id, body)
		s.mu.Lock()
		if err == nil {
			s.acked = append(s.acked, id)
			s.sent[rec]++
		} else if time.Now().After(giveUp) {
			s.failed = append(s.failed, err)
		}
		s.mu.Unlock()
		if err == nil {
			return true
		}
		if time.Now().After(giveUp) {
			return false
		}
		if (attempt+1)%s.relays.len() == 0 {
			// Every relay refused it: a sender's retry interval.
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// checkSent wants every event of the scenario acknowledged.
func (s *recordingScenario) checkSent(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failed) > 0 {
		t.Errorf("%d events of the scenario acknowledged by no relay within a minute, e.g. %v", len(s.failed), s.failed[0])
	}
}

// threads is what the Slack API saw per recording.
type threads struct {
	parents map[string][]string // recording: ts of each parent posted
	replies map[string]int      // recording: replies in its threads
	updates int
	strays  []slacktest.Call // replies and updates of no known parent
}

// threadsOf sorts the calls the Slack API received by recording; a
// parent's text ends with the recording it is about.
func threadsOf(calls []slacktest.Call) threads {
	th := threads{parents: map[string][]string{}, replies: map[string]int{}}
	owner := map[string]string{}
	for _, c := range calls {
		if c.IsPost() {
			i := strings.LastIndex(c.Text, "— recording ")
			if i < 0 {
				th.strays = append(th.strays, c)
				continue
			}
			rec := c.Text[i+len("— recording "):]
			th.parents[rec] = append(th.parents[rec], c.TS)
			owner[c.TS] = rec
		}
	}
	for _, c := range calls {
		switch {
		case c.IsReply() && owner[c.ThreadTS] != "":
			th.replies[owner[c.ThreadTS]]++
		case c.Method == "chat.update" && owner[c.TS] != "":
			th.updates++
		case !c.IsPost():
			th.strays = append(th.strays, c)
		}
	}
	return th
}

// complete reports whether every acknowledged event of every recording has
// a message in Slack: its parent or a reply.
func (s *recordingScenario) complete(th threads) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rec, n := range s.sent {
		if len(th.parents[rec])+th.replies[rec] < n {
			return false
		}
	}
	return true
}

// checkThreads waits until every event is in Slack and wants one parent
// per recording, and every reply and update in one of them.
func (s *recordingScenario) checkThreads(t *testing.T, api *slacktest.Server) threads {
	t.Helper()
	var th threads
	if !poll(90*time.Second, func() bool { th = threadsOf(api.Calls()); return s.complete(th) }) {
		t.Errorf("not every acknowledged event of the scenario reached Slack: events %v, parents %v, replies %v", s.sent, th.parents, th.replies)
	}
	for rec := range s.sent {
		if n := len(th.parents[rec]); n != 1 {
			t.Errorf("recording %s: %d Slack threads (parents %v), want 1", rec, n, th.parents[rec])
		}
	}
	if len(th.strays) > 0 {
		t.Errorf("%d Slack calls in no recording's thread, e.g. %s", len(th.strays), th.strays[0])
	}
	return th
}

// injections counts, per expectation key, the missed events stored (a
// missed event's id and reception time; a repeat delivery of one stored
// event repeats both) and the lines written, over the archives of dirs.
func injections(t *testing.T, dirs []string) (stored, lines map[string]int) {
	t.Helper()
	stored, lines = map[string]int{}, map[string]int{}
	seen := map[string]bool{}
	for _, d := range dirs {
		for _, l := range readMissed(t, filepath.Join(d, "archive.jsonl")) {
			if l.Event != rules.MissedEvent {
				continue
			}
			lines[l.Payload.Key]++
			if id := l.MsgID + " " + l.ReceivedAt.String(); !seen[id] {
				seen[id] = true
				stored[l.Payload.Key]++
			}
		}
	}
	return stored, lines
}

// checkMissed waits for the missed event of every recording that never got
// its transcript and for no timer to be open, then wants each of them
// injected once, and none for a recording whose transcript came in time.
func (s *recordingScenario) checkMissed(t *testing.T, dirs []string, admin *relayProcess) (stored, lines map[string]int) {
	t.Helper()
	done := func() bool {
		stored, lines = injections(t, dirs)
		for _, rec := range s.missing {
			if stored[rec] == 0 {
				return false
			}
		}
		return admin.metric(`relay_expectations_open{expectation="transcript-arrives"}`) == "0"
	}
	if !poll(60*time.Second, done) {
		t.Errorf("missed events %v; want one for each of %v, and no open timer (%s open)", stored, s.missing, admin.metric(`relay_expectations_open{expectation="transcript-arrives"}`))
	}
	for _, rec := range s.missing {
		if stored[rec] != 1 {
			t.Errorf("recording %s: its missed expectation injected %d times, want once", rec, stored[rec])
		}
	}
	for rec, ok := range s.inTime {
		if ok && stored[rec] != 0 {
			t.Errorf("recording %s: transcript acknowledged in time, but %d missed events", rec, stored[rec])
		}
	}
	return stored, lines
}

// summary is the scenario's figures for the test log.
func (s *recordingScenario) summary(th threads, stored, lines map[string]int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	events, replies, late := 0, 0, 0
	for rec, n := range s.sent {
		events += n
		replies += th.replies[rec]
	}
	for _, ok := range s.inTime {
		if !ok {
			late++
		}
	}
	injected, written := 0, 0
	for k, n := range stored {
		injected += n
		written += lines[k]
	}
	return fmt.Sprintf("%d recordings, %d of their events acknowledged over the relays: %d Slack threads, %d replies (%d extra, at least once), %d parent updates; %d recordings without a transcript: %d missed events injected, %d lines written for them (%d transcripts acknowledged too late to count)",
		len(s.sent), events, len(th.parents), replies, replies-(events-len(th.parents)), th.updates, len(s.missing), injected, written, late)
}
