package relay

import (
	"errors"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/relay-dev/relay/relay/pump"
)

// The embedded server is reached through net.Pipe, which has no buffer: a
// write returns only once the server's read loop has taken every byte. The
// nats.go client writes from its flusher goroutine while holding the
// connection's lock, so every publish and every ack of every goroutine
// waited on the server's read loop, and a mutex profile under load showed
// that lock as the relay's most contended by far. pipeConn gives the client
// end of the pipe a bounded buffer, as a socket has: a write is copied and
// returns, and one goroutine feeds the pipe, many writes at a time, in order.
//
// Loopback TCP has that buffer, but measured slower than the buffered pipe
// (BenchmarkEmbeddedPublish, see docs/benchmarks.md), and it would make the
// embedded server listen on a port that every local process can reach,
// which would then need credentials.

// inProcess connects nats.go to the embedded server through a pipeConn.
type inProcess struct{ ns *server.Server }

// InProcessConn implements nats.InProcessConnProvider.
func (p inProcess) InProcessConn() (net.Conn, error) {
	c, err := p.ns.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newPipeConn(c, pipeBuffer), nil
}

// pipeBuffer bounds what a pipeConn holds before a write waits: the size of
// a generous socket send buffer.
const pipeBuffer = 4 << 20

// pipeConn is a net.Conn whose writes go through a pump.Writer (a bounded
// buffer, emptied into the wrapped connection by one goroutine). Reads and
// read deadlines are the wrapped connection's; write deadlines are accepted
// and ignored (a write waits only while the buffer is full, for the server's
// read loop, which always reads). The wrapped connection's first write error
// is returned by every later write; after Close, writes return
// net.ErrClosed.
type pipeConn struct {
	net.Conn
	w *pump.Writer
}

func newPipeConn(c net.Conn, max int) *pipeConn {
	return &pipeConn{Conn: c, w: pump.New(c, max)}
}

// Write copies p into the buffer, waiting while the buffer is full.
func (c *pipeConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if errors.Is(err, pump.ErrClosed) {
		err = net.ErrClosed
	}
	return n, err
}

// Close hands over what was written before it, then closes the wrapped
// connection. The server's read loop always reads (and a closed server
// fails the write), so the wait is short.
func (c *pipeConn) Close() error {
	if errors.Is(c.w.Close(), pump.ErrClosed) {
		return net.ErrClosed
	}
	return c.Conn.Close()
}

// SetDeadline sets the read deadline only (see pipeConn).
func (c *pipeConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// SetWriteDeadline is accepted and ignored (see pipeConn).
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }
