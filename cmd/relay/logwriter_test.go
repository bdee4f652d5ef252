package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGroupWriterKeepsEveryLineWhole(t *testing.T) {
	var out syncBuffer
	w := newGroupWriter(&out)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "writer %d line %d %s\n", g, i, strings.Repeat("x", i%300))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "after close\n") // written through

	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines+1 {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines+1)
	}
	next := make([]int, writers) // each writer's lines arrive whole and in order
	for _, l := range got[:len(got)-1] {
		var g, i int
		if _, err := fmt.Sscanf(l, "writer %d line %d", &g, &i); err != nil {
			t.Fatalf("mangled line %q: %v", l, err)
		}
		if i != next[g] || !strings.HasSuffix(l, " "+strings.Repeat("x", i%300)) {
			t.Fatalf("writer %d: line %q, want line %d whole", g, l, next[g])
		}
		next[g]++
	}
	if got[len(got)-1] != "after close" {
		t.Fatalf("last line %q, want the one written after Close", got[len(got)-1])
	}
	t.Logf("%d lines in %d writes", len(got), out.n)
}

// chanWriter passes each write on.
type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

func TestGroupWriterWritesWithoutClose(t *testing.T) {
	out := make(chanWriter, 1)
	w := newGroupWriter(out)
	defer w.Close()
	fmt.Fprintf(w, "one line\n")
	select {
	case got := <-out:
		if got != "one line\n" {
			t.Fatalf("wrote %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("line not written within 10s while the writer is open")
	}
}
