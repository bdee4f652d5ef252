package pump

import (
	"errors"
	"testing"
	"testing/synctest"

	"github.com/relay-dev/relay/relay/relaytest"
)

func TestCloseHandsOverThenRefuses(t *testing.T) {
	var out relaytest.LockedBuffer
	w := New(&out, 4)
	for _, s := range []string{"ab", "cd", "efgh", "ij"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatalf("write %q: %v", s, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := out.String(); got != "abcdefghij" {
		t.Fatalf("output %q, want abcdefghij", got)
	}
	if _, err := w.Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: %v, want ErrClosed", err)
	}
}

// failing fails every write.
type failing struct{}

var errOut = errors.New("output gone")

func (failing) Write([]byte) (int, error) { return 0, errOut }

func TestOutputErrorIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(failing{}, 64)
		if _, err := w.Write([]byte("x")); err != nil {
			t.Fatalf("buffered write: %v", err)
		}
		synctest.Wait() // the goroutine's write fails
		if _, err := w.Write([]byte("y")); !errors.Is(err, errOut) {
			t.Errorf("write after the output failed: %v, want its error", err)
		}
		if err := w.Close(); !errors.Is(err, errOut) {
			t.Errorf("close: %v, want the output's error", err)
		}
	})
}
