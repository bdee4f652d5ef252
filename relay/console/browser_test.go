package console_test

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/relay-dev/relay/relay/relaytest"
)

var update = flag.Bool("update", false, "write the console's screenshots under docs/console/")

// chromium finds the browser: $CHROMIUM, else Debian's chromium or a
// Chrome on PATH.
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab; every action of it is bounded.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts headless Chromium. Without one the test is skipped,
// unless CI is set: there a missing browser is a failure.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium()
	if path == "" {
		if os.Getenv("CI") == "" {
			t.Skip("no chromium binary found (apt-get install chromium); set CI to make this a failure")
		}
		t.Fatal("CI is set and no chromium binary was found: .ci/run installs Debian's chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	start, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStart()
	go func() { // the browser's start is bounded too
		<-start.Done()
		if start.Err() == context.DeadlineExceeded {
			cancel()
		}
	}()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	b := &browser{t: t, ctx: ctx}
	b.watchErrors()
	b.do("set the viewport", chromedp.EmulateViewport(1280, 800))
	return b
}

// watchErrors fails the test, at its end, for every uncaught script error
// and every security message (a Content-Security-Policy violation, say)
// that a page reported.
func (b *browser) watchErrors() {
	var mu sync.Mutex
	var problems []string
	add := func(s string) {
		mu.Lock()
		problems = append(problems, s)
		mu.Unlock()
	}
	err := chromedp.Listen(b.ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			add(fmt.Sprintf("script error at %s:%d: %s", e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber+1, msg))
		case *cdplog.EventEntryAdded:
			if e.Entry.Source == cdplog.EntrySourceSecurity {
				add("security: " + e.Entry.Text)
			}
		}
	})
	if err != nil {
		b.t.Fatalf("listen to the page: %v", err)
	}
	b.do("enable the log", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdplog.Enable, cdp.Empty{})
		return err
	}))
	b.t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			b.t.Errorf("the page reported %s", p)
		}
	})
}

// do runs actions, failing the test with what when they fail or take
// longer than wait.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// until waits for the JavaScript expression to be truthy, through page
// loads (a form's submit navigates while the predicate is being polled).
func (b *browser) until(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0), chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if ctx.Err() != nil || !navigated(err) {
			b.t.Fatalf("timed out after %s waiting for %s: %v", wait, what, err)
		}
	}
}

// navigated reports whether err says the page went away under a script.
func navigated(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "navigated or closed") || strings.Contains(msg, "context was destroyed") || strings.Contains(msg, "Cannot find context")
}

// text is the text of the first element sel matches ("" for none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// open navigates to the console path and waits for its main heading.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

// shot writes the page at a laptop's and a phone's size to
// docs/console/<name>-{laptop,phone}.png when -update is given.
func (b *browser) shot(name string) {
	b.t.Helper()
	if !*update {
		return
	}
	b.until("the page to settle", `document.getAnimations().length === 0`)
	for _, vp := range []struct {
		w, h int64
		kind string
	}{{1280, 800, "laptop"}, {390, 844, "phone"}} {
		b.do("resize", chromedp.EmulateViewport(vp.w, vp.h), chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		ctx, cancel := context.WithTimeout(b.ctx, wait)
		raw, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		out := filepath.Join("..", "..", "docs", "console", name+"-"+vp.kind+".png")
		if err := os.WriteFile(out, recompress(b.t, raw), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do("resize back", chromedp.EmulateViewport(1280, 800))
}

// recompress re-encodes a screenshot as a paletted PNG at the best
// compression: the 256 most frequent colours, every other pixel mapped to
// the nearest of them (a page is mostly flat colour; only the edges of
// anti-aliased text lose a shade). It keeps the committed images small.
func recompress(t *testing.T, raw []byte) []byte {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	bounds := img.Bounds()
	counts := map[color.RGBA]int{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	colors := slices.SortedFunc(maps.Keys(counts), func(a, b color.RGBA) int {
		return cmp.Or(counts[b]-counts[a], cmp.Compare(a.R, b.R), cmp.Compare(a.G, b.G), cmp.Compare(a.B, b.B), cmp.Compare(a.A, b.A))
	})
	pal := make(color.Palette, 0, 256)
	for _, c := range colors[:min(256, len(colors))] {
		pal = append(pal, c)
	}
	out := image.NewPaletted(bounds, pal)
	draw.Draw(out, bounds, img, bounds.Min, draw.Src)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestConsole drives the console in headless Chromium against a real relay:
// log in, watch events arrive, open one, dead-letter, replay and purge, a
// bad filter, and a cross-site POST. With -update it also writes the
// screenshots under docs/console/.
func TestConsole(t *testing.T) {
	b := newBrowser(t)
	r := startRelay(t, testToken)

	// Logging in: a page redirects to the form, a wrong token is refused,
	// the right one lands on the page asked for.
	b.open(r.admin + "/events")
	if loc := b.text("h1"); loc != "Log in" {
		t.Fatalf("without a session /events shows %q, want the login form", loc)
	}
	b.shot("login")
	b.do("log in with a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Submit(chromedp.CSS("#token")))
	b.until("the login form to refuse a wrong token", `(document.querySelector(".login .error")||{}).innerText === "That is not the admin token."`)
	b.do("log in", chromedp.SendKeys(chromedp.CSS("#token"), testToken), chromedp.Submit(chromedp.CSS("#token")))
	b.until("the live feed after login", `location.pathname === "/events" && document.querySelector("h1").innerText === "Live feed"`)

	// The live feed: empty, then three signed events appear without a
	// reload (the marker set on the page survives).
	b.until("the live feed's empty state", `!document.querySelector("#empty").hidden && document.querySelector("#empty-all").innerText.includes("No events yet")`)
	b.shot("events-empty")
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.__notReloaded = true`))
	for i, ev := range []string{"bot.joining_call", "recording.done", "transcript.done"} {
		r.send(fmt.Sprintf("msg_live_%d", i+1), eventBody(ev, "rec_1"))
	}
	b.until("3 events in the live feed", `document.querySelectorAll("#feed tbody tr").length === 3`)
	b.until("the deliveries settled in the feed", `[...document.querySelectorAll("#feed tbody .deliveries")].every(td => td.innerText.includes("api: delivered") && td.innerText.includes("archive: delivered"))`)
	if got := b.text("#feed tbody tr:first-child"); !strings.Contains(got, "msg_live_3") || !strings.Contains(got, "transcript.done") {
		t.Fatalf("the newest row is %q, want msg_live_3 (transcript.done)", got)
	}
	b.until("no reload", `window.__notReloaded === true`)
	b.shot("events")

	// One event: its rules, its trail and its payload.
	b.do("open msg_live_2", chromedp.Click(chromedp.CSS(`#feed tbody tr:nth-child(2) a`)))
	b.until("the event page", `location.pathname.startsWith("/events/") && document.querySelector("#meta").innerText.includes("msg_live_2")`)
	b.until("the matched rules", `document.querySelector("#rules").innerText.includes("everything")`)
	b.until("the delivery trail", `document.querySelectorAll("#trail tbody tr").length === 2 && document.querySelector("#trail tbody").innerText.includes("delivered")`)
	if got := b.text("#payload"); !strings.Contains(got, `"event": "recording.done"`) {
		t.Fatalf("payload shown as %q, want it pretty-printed", got)
	}
	b.until("a local time with the UTC on hover", `(document.querySelector("#meta time")||{}).title.endsWith(" UTC")`)
	b.shot("event")
	replayed := r.hook.received("msg_live_2")
	b.do("replay it to api", chromedp.SetValue(chromedp.CSS("#sink"), "api"), chromedp.Click(chromedp.CSS(`#replay button[type=submit]`)))
	b.until("the replay queued", `document.querySelector("#replay-result").innerText.startsWith("Queued for delivery to api (1 event)")`)
	relaytest.Eventually(t, wait, "msg_live_2 delivered again to api", func() bool { return r.hook.received("msg_live_2") > replayed })

	// A dead letter: the sink answers 400, so the delivery is given up.
	r.hook.code.Store(http.StatusBadRequest)
	r.send("msg_dead_1", eventBody("transcript.failed", "rec_2"))
	b.open(r.admin + "/dead-letters")
	b.until("the dead letter in the list", `document.querySelector("#dead tbody").innerText.includes("msg_dead_1")`)
	if got := b.text("#dead tbody tr:first-child"); !strings.Contains(got, "400") {
		t.Fatalf("dead letter row %q does not say why (400)", got)
	}
	b.do("show it", chromedp.Click(chromedp.CSS(`#dead tbody tr:first-child button`)))
	b.until("its payload", `!document.querySelector("#detail").hidden && document.querySelector("#detail-payload").innerText.includes("transcript.failed")`)
	b.shot("dead-letters")

	// Replay it once the sink recovers: it is delivered, and it leaves the list.
	r.hook.code.Store(http.StatusOK)
	before := r.hook.received("msg_dead_1")
	b.do("select it", chromedp.Click(chromedp.CSS(`#dead tbody tr:first-child input[type=checkbox]`)))
	b.until("the replay button to count it", `document.querySelector("#replay-selected").innerText === "Replay selected (1)"`)
	b.do("replay it", chromedp.Click(chromedp.CSS("#replay-selected")))
	b.until("the replay reported", `document.querySelector("#result").innerText.startsWith("Replayed 1 dead letter")`)
	b.until("the list empty again", `!document.querySelector("#empty").hidden`)
	if !relaytest.Poll(wait, func() bool { return r.hook.received("msg_dead_1") > before }) {
		t.Fatal("the replayed dead letter never reached the sink")
	}
	b.open(r.admin + "/events?where=" + url.QueryEscape(`msg_id == "msg_dead_1"`))
	b.until("the replayed event in the filtered feed", `document.querySelectorAll("#feed tbody tr").length === 1`)
	b.until("its api delivery delivered", `document.querySelector("#feed tbody .deliveries").innerText.includes("api: delivered")`)

	// Purge with a confirmation that says how many; Cancel keeps them.
	r.hook.code.Store(http.StatusBadRequest)
	r.send("msg_dead_2", eventBody("transcript.failed", "rec_3"))
	r.send("msg_dead_3", eventBody("transcript.failed", "rec_4"))
	b.open(r.admin + "/dead-letters")
	b.until("two dead letters", `document.querySelectorAll("#dead tbody tr").length === 2`)
	b.do("purge all", chromedp.Click(chromedp.CSS("#purge-all")))
	b.until("the confirmation", `document.querySelector("#confirm").open`)
	if got := b.text("#confirm-text"); !strings.HasPrefix(got, "Purge 2 dead letters?") {
		t.Fatalf("confirmation says %q, want it to say how many (2)", got)
	}
	b.until("the focus on Cancel", `document.activeElement.id === "confirm-cancel"`)
	b.do("cancel with Escape", chromedp.KeyEvent(kb.Escape))
	b.until("the dialog closed", `!document.querySelector("#confirm").open`)
	if n := b.text("#result"); strings.Contains(n, "Purged") {
		t.Fatalf("cancel purged: %q", n)
	}
	b.do("purge all again", chromedp.Click(chromedp.CSS("#purge-all")))
	b.until("the confirmation again", `document.querySelector("#confirm").open`)
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
	b.until("the purge reported", `document.querySelector("#result").innerText === "Purged 2 dead letters."`)
	b.until("the empty state", `!document.querySelector("#empty").hidden && document.querySelectorAll("#dead tbody tr").length === 0`)
	r.hook.code.Store(http.StatusOK)

	// Pause holds new events back; Resume shows them.
	b.open(r.admin + "/events")
	b.until("the feed", `document.querySelector("#feed tbody").innerText.includes("msg_dead_3")`)
	b.do("pause", chromedp.Click(chromedp.CSS("#pause")))
	b.until("paused", `document.querySelector("#pause").getAttribute("aria-pressed") === "true" && document.querySelector("#status").innerText.startsWith("Paused")`)
	r.send("msg_live_4", eventBody("bot.done", "rec_5"))
	relaytest.Eventually(t, wait, "msg_live_4 stored", func() bool { return r.stored("msg_live_4") })
	if got := b.text("#feed tbody"); strings.Contains(got, "msg_live_4") {
		t.Fatal("a paused feed showed a new event")
	}
	b.do("resume", chromedp.Click(chromedp.CSS("#pause")))
	b.until("the held event after resuming", `document.querySelector("#feed tbody tr:first-child").innerText.includes("msg_live_4")`)

	// The keyboard: the first Tab reaches "Skip to content", which moves
	// the focus to the page's content.
	b.open(r.admin + "/events")
	b.do("press Tab", chromedp.KeyEvent(kb.Tab))
	b.until("the skip link focused", `document.activeElement.className === "skip"`)
	b.do("follow it", chromedp.KeyEvent(kb.Enter))
	b.until("the focus in the content", `location.hash === "#main"`)

	// A bad where shows the compiler's message.
	b.do("type a bad filter", chromedp.SendKeys(chromedp.CSS("#where"), "sub_cod == 1"), chromedp.Submit(chromedp.CSS("#where")))
	b.until("the compiler's message", `!document.querySelector("#error").hidden && document.querySelector("#error").innerText.startsWith("where: unknown name sub_cod")`)

	// The other pages, for the screenshots and a look at what they show.
	b.open(r.admin + "/")
	b.until("the overview's sinks", `document.querySelector("#sinks tbody").innerText.includes("archive")`)
	b.until("the accept rate", `/\d/.test(document.querySelector("#ingest dd").innerText)`)
	b.shot("overview")
	b.open(r.admin + "/rules")
	b.until("the rules with their hits", `document.querySelectorAll("#rules tbody tr").length === 2`)
	b.do("backtest a candidate", chromedp.SendKeys(chromedp.CSS("#rule-when"), `event == "transcript.failed"`), chromedp.Click(chromedp.CSS(`#try-rule button[type=submit]`)))
	b.until("the backtest's answer", `document.querySelector("#try-rule-result").innerText.includes("candidate would match 3 stored events")`)
	b.do("route an event", chromedp.Click(chromedp.CSS(`#try-event button[type=submit]`)))
	b.until("the route of the pasted event", `document.querySelector("#try-event-result").innerText.includes("Matched rules: failures, everything")`)
	b.shot("rules")
	b.open(r.admin + "/config")
	b.until("the config", `document.querySelector("#config").innerText.includes("admin_token")`)
	if got := b.text("#config"); strings.Contains(got, testToken) || strings.Contains(got, testSecret) ||
		strings.Contains(got, "sk_live_abcdefghijkl") || strings.Contains(got, "hook-credential") {
		t.Fatalf("the config page shows a secret:\n%s", got)
	}
	b.shot("config")

	// A cross-site POST, from a page of another origin that the browser
	// has the session for, is refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/api/v1/dlq/replay"></form><script>document.getElementById("f").submit()</script>`, r.admin)
	}))
	defer evil.Close()
	b.do("visit another site", chromedp.Navigate(evil.URL))
	b.until("the refusal", `location.href.startsWith("`+r.admin+`") && document.body.innerText.includes("cross-origin request refused")`)

	// Logging out ends the session.
	b.open(r.admin + "/")
	b.do("log out", chromedp.Click(chromedp.CSS(".logout button")))
	b.until("the login form", `location.pathname === "/login"`)
	b.open(r.admin + "/config")
	if got := b.text("h1"); got != "Log in" {
		t.Fatalf("after logout /config shows %q, want the login form", got)
	}
}
