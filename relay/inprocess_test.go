package relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// readAll collects everything the server end of the pipe receives until the
// client end closes.
func readAll(t *testing.T, server net.Conn) <-chan string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(server)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		got <- string(b)
	}()
	return got
}

func TestPipeConnKeepsEveryWriteWholeAndInOrder(t *testing.T) {
	for _, max := range []int{1, 64, pipeBuffer} {
		t.Run(fmt.Sprintf("buffer %d", max), func(t *testing.T) {
			client, server := net.Pipe()
			pc := newPipeConn(client, max)
			got := readAll(t, server)

			const writers, each = 8, 300
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						if _, err := fmt.Fprintf(pc, "w%d-%04d\n", w, i); err != nil {
							t.Errorf("write: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := pc.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}

			next := make([]int, writers)
			sc := bufio.NewScanner(strings.NewReader(<-got))
			lines := 0
			for sc.Scan() {
				var w, i int
				if _, err := fmt.Sscanf(sc.Text(), "w%d-%04d", &w, &i); err != nil || w < 0 || w >= writers {
					t.Fatalf("torn or foreign line %q", sc.Text())
				}
				if i != next[w] {
					t.Fatalf("writer %d: line %d arrived where %d was due", w, i, next[w])
				}
				next[w]++
				lines++
			}
			if lines != writers*each {
				t.Fatalf("got %d lines, want %d: Close must hand over everything written before it", lines, writers*each)
			}
		})
	}
}

func TestPipeConnWriteWaitsOnlyWhenTheBufferIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		pc := newPipeConn(client, 16)
		chunk := []byte("0123456789abcdef")

		// The pump takes the first chunk and waits in the pipe for a reader;
		// the second fills the buffer. Neither write waits.
		for range 2 {
			if _, err := pc.Write(chunk); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		var third atomic.Bool
		go func() {
			if _, err := pc.Write(chunk); err != nil {
				t.Errorf("third write: %v", err)
			}
			third.Store(true)
		}()
		synctest.Wait()
		if third.Load() {
			t.Fatal("a write into a full buffer returned before the reader read")
		}

		buf := make([]byte, 3*len(chunk))
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !third.Load() {
			t.Fatal("the write still waits after the reader drained the buffer")
		}
		go func() { _, _ = io.Copy(io.Discard, server) }()
		if err := pc.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPipeConnAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		pc := newPipeConn(client, 64)
		go func() { _, _ = io.Copy(io.Discard, server) }()
		if err := pc.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("write after close: %v, want net.ErrClosed", err)
		}
		if err := pc.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("second close: %v, want net.ErrClosed", err)
		}
	})
}

func TestPipeConnReportsTheServerGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		pc := newPipeConn(client, 64)
		_ = server.Close()

		// The first write is buffered; the pump's write fails, and every
		// write after that returns the failure.
		if _, err := pc.Write([]byte("PING\r\n")); err != nil {
			t.Fatalf("buffered write: %v", err)
		}
		synctest.Wait()
		if _, err := pc.Write([]byte("PING\r\n")); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("write after the server closed: %v, want io.ErrClosedPipe", err)
		}
		_ = pc.Close() // returns: nothing is left to hand over
	})
}

func TestPipeConnDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		pc := newPipeConn(client, 64)
		defer server.Close()
		defer pc.Close()

		// Write deadlines are ignored: a write never waits on the reader
		// unless the buffer is full.
		if err := pc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.Write([]byte("x")); err != nil {
			t.Fatalf("write past an ignored deadline: %v", err)
		}
		// Read deadlines are the pipe's.
		if err := pc.SetDeadline(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		var ne net.Error
		if _, err := pc.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("read past the deadline: %v, want a timeout", err)
		}
		go func() { _, _ = io.Copy(io.Discard, server) }()
	})
}
