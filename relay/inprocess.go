package relay

import (
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server is reached through net.Pipe, which has no buffer: a
// write returns only once the server's read loop has taken every byte. The
// nats.go client writes from its flusher goroutine while holding the
// connection's lock, so every publish and every ack of every goroutine
// waited on the server's read loop, and a mutex profile under load showed
// that lock as the relay's most contended by far. pipeConn gives the client
// end of the pipe a bounded buffer, as a socket has: a write is copied and
// returns, and one goroutine feeds the pipe, many writes at a time, in order.

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

// pipeConn is a net.Conn whose writes go through a bounded buffer to the
// wrapped connection. Reads and read deadlines are the wrapped
// connection's; write deadlines are accepted and ignored (a write waits only
// while the buffer is full, for the server's read loop, which always reads).
type pipeConn struct {
	net.Conn
	max int

	mu      sync.Mutex
	space   *sync.Cond // signalled when the pump has taken the buffer
	buf     []byte     // written, not yet handed to the wrapped connection
	spare   []byte     // the pump's previous buffer, reused
	err     error      // the wrapped connection's write error, for good
	closing bool

	kick chan struct{} // cap 1: there is something to write, or closing
	done chan struct{} // closed when the pump has returned
}

func newPipeConn(c net.Conn, max int) *pipeConn {
	pc := &pipeConn{Conn: c, max: max, kick: make(chan struct{}, 1), done: make(chan struct{})}
	pc.space = sync.NewCond(&pc.mu)
	go pc.pump()
	return pc
}

// Write copies p into the buffer, waiting while the buffer is full.
func (c *pipeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closing && len(c.buf) > 0 && len(c.buf)+len(p) > c.max {
		c.space.Wait()
	}
	switch {
	case c.err != nil:
		c.mu.Unlock()
		return 0, c.err
	case c.closing:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// pump hands the buffer to the wrapped connection until Close has been
// called and everything written before it has been handed over, or a write
// fails.
func (c *pipeConn) pump() {
	defer close(c.done)
	for range c.kick {
		for {
			c.mu.Lock()
			if len(c.buf) == 0 {
				closing := c.closing
				c.mu.Unlock()
				if closing {
					return
				}
				break
			}
			out := c.buf
			c.buf, c.spare = c.spare[:0], nil
			c.mu.Unlock()

			_, err := c.Conn.Write(out)

			c.mu.Lock()
			c.spare = out[:0]
			if err != nil {
				c.err = err
			}
			c.space.Broadcast()
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// Close hands over what was written before it, then closes the wrapped
// connection. The server's read loop always reads (and a closed server
// fails the write), so the wait is short.
func (c *pipeConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return net.ErrClosed
	}
	c.closing = true
	c.space.Broadcast()
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	<-c.done
	return c.Conn.Close()
}

// SetDeadline sets the read deadline only (see pipeConn).
func (c *pipeConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// SetWriteDeadline is accepted and ignored (see pipeConn).
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }
