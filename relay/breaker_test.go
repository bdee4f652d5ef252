package relay

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// breakerStep is one step of a breaker script: time passes, then an
// attempt is asked for or an outcome reported.
type breakerStep struct {
	after time.Duration // time that passes before the step
	do    string        // "admit", "ok", "fail", "cancel", "reset"
	probe bool          // the outcome is the probe's
	ra    time.Duration // fail: the destination's Retry-After
	// admit: what it must answer.
	wantOK, wantProbe bool
}

// TestBreakerScripts: the breaker opens after `failures` failures in a row
// or at a Retry-After, lets one probe through after the cooldown, closes on
// a probe that succeeds and opens again on one that fails (fake clock).
func TestBreakerScripts(t *testing.T) {
	const cooldown = 30 * time.Second
	fail := breakerStep{do: "fail"}
	ok := breakerStep{do: "ok"}
	admitted := breakerStep{do: "admit", wantOK: true}
	refused := breakerStep{do: "admit"}
	probe := breakerStep{do: "admit", wantOK: true, wantProbe: true}
	wait := func(d time.Duration, s breakerStep) breakerStep { s.after = d; return s }
	probed := func(s breakerStep) breakerStep { s.probe = true; return s }
	tests := []struct {
		name     string
		steps    []breakerStep
		wantOpen bool
	}{
		{"four failures leave it closed", []breakerStep{fail, fail, fail, fail, admitted}, false},
		{"the fifth in a row opens it", []breakerStep{fail, fail, fail, fail, fail, refused}, true},
		{"a success resets the count", []breakerStep{fail, fail, fail, fail, ok, fail, fail, fail, fail, admitted}, false},
		{"still refused just before the cooldown ends", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown-time.Millisecond, refused)}, true},
		{"one probe after the cooldown", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown, probe), refused, refused}, true},
		{"a probe that succeeds closes it", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown, probe), probed(ok), admitted, admitted}, false},
		{"a probe that fails opens it for another cooldown", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown, probe), probed(fail), wait(cooldown-time.Millisecond, refused), wait(time.Millisecond, probe)}, true},
		{"a cancelled probe lets the next attempt probe at once", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown, probe), probed(breakerStep{do: "cancel"}), probe}, true},
		{"a Retry-After opens it for that long", []breakerStep{{do: "fail", ra: 2 * time.Minute}, wait(time.Minute, refused), wait(time.Minute, probe)}, true},
		{"a probe's Retry-After sets the next probe", []breakerStep{{do: "fail", ra: time.Second}, wait(time.Second, probe), {do: "fail", probe: true, ra: time.Hour}, wait(cooldown, refused), wait(time.Hour-cooldown, probe)}, true},
		{"attempts from before it opened do not close it", []breakerStep{fail, fail, fail, fail, fail, ok, refused}, true},
		{"nor do their failures extend it", []breakerStep{fail, fail, fail, fail, fail, wait(cooldown-time.Second, fail), wait(time.Second, probe)}, true},
		{"but their Retry-After does", []breakerStep{fail, fail, fail, fail, fail, {do: "fail", ra: time.Hour}, wait(cooldown, refused), wait(time.Hour-cooldown, probe)}, true},
		{"reset closes it", []breakerStep{fail, fail, fail, fail, fail, {do: "reset"}, admitted}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(BreakerConfig{Failures: 5, Cooldown: cooldown}, time.Now, nil)
				for i, s := range tt.steps {
					time.Sleep(s.after)
					switch s.do {
					case "admit":
						probe, ok, _, _ := b.admit()
						if ok != s.wantOK || probe != s.wantProbe {
							t.Fatalf("step %d: admit = (probe %v, ok %v), want (probe %v, ok %v)", i, probe, ok, s.wantProbe, s.wantOK)
						}
					case "ok":
						b.success(s.probe)
					case "fail":
						b.failure(s.probe, s.ra, errBoom)
					case "cancel":
						b.cancel(s.probe)
					case "reset":
						b.reset()
					}
				}
				if got := b.isOpen(); got != tt.wantOpen {
					t.Errorf("open %v at the end, want %v", got, tt.wantOpen)
				}
			})
		})
	}
}

// TestBreakerWait: wait returns at once while closed, when the cooldown
// ends (as the probe), when the probe's outcome frees the next attempt,
// and when its context ends (fake clock).
func TestBreakerWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(BreakerConfig{Failures: 1, Cooldown: 10 * time.Second}, time.Now, nil)
		if probe, ok := b.wait(t.Context()); !ok || probe {
			t.Fatalf("closed: wait = (probe %v, ok %v), want a plain attempt", probe, ok)
		}
		b.failure(false, 0, errBoom)
		start := time.Now()
		if probe, ok := b.wait(t.Context()); !ok || !probe {
			t.Fatalf("open: wait = (probe %v, ok %v), want the probe", probe, ok)
		}
		if waited := time.Since(start); waited != 10*time.Second {
			t.Errorf("the probe waited %s, want the 10s cooldown", waited)
		}

		// While the probe is in flight, the next attempt waits for its
		// outcome: a success lets it go at once.
		got := make(chan bool)
		go func() { probe, ok := b.wait(t.Context()); got <- ok && !probe }()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("an attempt started while the probe was in flight")
		default:
		}
		b.success(true)
		if plain := <-got; !plain {
			t.Error("after the probe succeeded: want a plain attempt")
		}

		// A context that ends stops the wait.
		b.failure(false, 0, errBoom)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, ok := b.wait(ctx); ok {
			t.Error("wait went ahead after its context ended")
		}
	})
}

// TestBreakerReports: each opening and closing is reported once, with the
// cause, the time of the first probe and how long it was open; openTime
// adds up the time it spent open (fake clock).
func TestBreakerReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []breakerChange
		b := newBreaker(BreakerConfig{Failures: 2, Cooldown: time.Minute}, time.Now, func(c breakerChange) { changes = append(changes, c) })
		cause := errors.New("status 503")
		b.failure(false, 0, errBoom)
		b.failure(false, 0, cause)
		opened := time.Now()
		time.Sleep(time.Minute)
		b.admit()
		b.failure(true, 0, errBoom) // a failed probe: still open, not reported again
		time.Sleep(time.Minute)
		b.admit()
		b.success(true)
		time.Sleep(time.Hour) // closed: not counted
		if len(changes) != 2 {
			t.Fatalf("%d changes reported, want 2: %+v", len(changes), changes)
		}
		if c := changes[0]; !c.Open || c.Cause != cause || !c.Until.Equal(opened.Add(time.Minute)) {
			t.Errorf("open: got %+v, want the 503 and a probe at %v", c, opened.Add(time.Minute))
		}
		if c := changes[1]; c.Open || c.OpenFor != 2*time.Minute {
			t.Errorf("close: got %+v, want open for 2m", c)
		}
		b.failure(false, 30*time.Second, errBoom)
		time.Sleep(10 * time.Second)
		if got := b.openTime(); got != 2*time.Minute+10*time.Second {
			t.Errorf("openTime %s, want 2m10s", got)
		}
	})
}
