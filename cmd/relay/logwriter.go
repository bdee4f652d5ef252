package main

import (
	"io"

	"github.com/relay-dev/relay/relay/pump"
)

// groupWriter hands log lines to one goroutine that writes every line that
// arrived while it was busy in a single write (a pump.Writer): under load,
// one syscall serves many events' log lines; when idle, a line is written as
// soon as the goroutine wakes. Nothing waits on a timer, so a line is out
// within microseconds; only the lines of that instant are lost if the
// process is killed. Write never fails: output errors are dropped, as a log
// write to a closed stderr would be. After Close, writes go straight to the
// output.
type groupWriter struct {
	out  io.Writer
	pump *pump.Writer
}

// maxPending bounds the lines waiting for the writer goroutine: past it,
// Write waits.
const maxPending = 1 << 20

func newGroupWriter(out io.Writer) *groupWriter {
	return &groupWriter{out: out, pump: pump.New(dropErrors{out}, maxPending)}
}

func (w *groupWriter) Write(p []byte) (int, error) {
	// The pump's only error is pump.ErrClosed (dropErrors never fails),
	// returned once everything written before Close is out.
	if _, err := w.pump.Write(p); err != nil {
		_, _ = w.out.Write(p) // write through
	}
	return len(p), nil
}

// Close writes what is pending and stops the writer goroutine; later writes
// go straight to the output.
func (w *groupWriter) Close() error {
	_ = w.pump.Close() // only pump.ErrClosed, on a second Close
	return nil
}

// dropErrors is an io.Writer that drops the errors of the one it wraps, so
// that a failed write does not stop the pump.
type dropErrors struct{ io.Writer }

func (d dropErrors) Write(p []byte) (int, error) {
	_, _ = d.Writer.Write(p)
	return len(p), nil
}
