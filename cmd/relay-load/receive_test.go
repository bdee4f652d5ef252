package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startReceiveMode runs receive mode through run() with args and returns
// its address, a channel with the exit code and the stdout/stderr buffers.
func startReceiveMode(t *testing.T, ctx context.Context, args ...string) (addr string, done chan int, out *lineWriter, stderr *bytes.Buffer) {
	t.Helper()
	out = &lineWriter{first: make(chan string, 1)}
	stderr = &bytes.Buffer{}
	done = make(chan int, 1)
	go func() {
		done <- run(ctx, context.Background(), append([]string{"--receive", "127.0.0.1:0"}, args...), out, stderr)
	}()
	select {
	case line := <-out.first:
		var ok bool
		addr, ok = strings.CutPrefix(line, "listening on ")
		if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("first line %q", line)
		}
	case code := <-done:
		t.Fatalf("receiver exited early with %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not start")
	}
	return addr, done, out, stderr
}

func postBody(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitExit waits for run() to return and decodes the JSON report after the
// "listening on" line.
func waitExit(t *testing.T, done chan int, out *lineWriter, stderr *bytes.Buffer) receiveReport {
	t.Helper()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("receiver did not stop")
	}
	out.mu.Lock()
	lines := strings.Split(strings.TrimSpace(out.buf.String()), "\n")
	out.mu.Unlock()
	if len(lines) != 2 {
		t.Fatalf("stdout has %d lines, want 2: %q", len(lines), lines)
	}
	var rep receiveReport
	if err := json.Unmarshal([]byte(lines[1]), &rep); err != nil {
		t.Fatalf("decode report %q: %v", lines[1], err)
	}
	return rep
}

// TestReceiveStopsAfterRequests posts bodies stamped a known time in the
// past and checks the counts, that every percentile is at least that offset,
// and that the receiver stops by itself after --requests POSTs.
func TestReceiveStopsAfterRequests(t *testing.T) {
	const offset = 250 * time.Millisecond
	const stamped, plain, invalid = 20, 3, 2
	const total = stamped + plain + invalid
	addr, done, out, stderr := startReceiveMode(t, context.Background(), "--requests", fmt.Sprint(total), "--json")
	url := "http://" + addr + "/hook"
	for i := 0; i < stamped; i++ {
		at := time.Now().Add(-offset - time.Duration(i)*time.Millisecond)
		body := fmt.Sprintf(`{"received_at":%q,"n":%d}`, at.Format(time.RFC3339Nano), i)
		if code := postBody(t, url, body); code != 200 {
			t.Fatalf("post %d: status %d", i, code)
		}
	}
	for _, body := range []string{`{"event":"bot.done"}`, `not json`, `{"received_at":12}`} {
		if code := postBody(t, url, body); code != 200 {
			t.Fatalf("post %q: status %d", body, code)
		}
	}
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st receiveStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st.Received != stamped+plain || st.Measured != stamped || st.Missing != plain {
		t.Errorf("stats %+v", st)
	}
	for _, body := range []string{`{"received_at":"yesterday"}`, `{"received_at":"2025-13-01T00:00:00Z"}`} {
		if code := postBody(t, url, body); code != 200 {
			t.Fatalf("post %q: status %d", body, code)
		}
	}
	rep := waitExit(t, done, out, stderr)
	if rep.Received != total || rep.Latency.Count != stamped || rep.Missing != plain || rep.Invalid != invalid {
		t.Errorf("report received=%d measured=%d missing=%d invalid=%d, want %d %d %d %d",
			rep.Received, rep.Latency.Count, rep.Missing, rep.Invalid, total, stamped, plain, invalid)
	}
	min := float64(offset / time.Millisecond)
	for name, v := range map[string]float64{"p50": rep.Latency.P50, "p90": rep.Latency.P90, "p99": rep.Latency.P99, "max": rep.Latency.Max, "mean": rep.Latency.Mean} {
		if v < min || v > min+10_000 {
			t.Errorf("%s = %.3fms, want >= %.0fms (and sane)", name, v, min)
		}
	}
	if rep.Latency.Max < min+float64(stamped-1) {
		t.Errorf("max %.3fms, want >= %.0fms", rep.Latency.Max, min+float64(stamped-1))
	}
	if rep.Interrupted {
		t.Error("report says interrupted")
	}
	if _, err := http.Post(url, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("receiver still answering after stopping")
	}
}

// TestReceiveDurationAndSignal checks the other two ways to stop, and the
// text report.
func TestReceiveDurationAndSignal(t *testing.T) {
	t.Run("duration", func(t *testing.T) {
		start := time.Now()
		addr, done, out, stderr := startReceiveMode(t, context.Background(), "--duration", "300ms", "--json")
		postBody(t, "http://"+addr+"/", fmt.Sprintf(`{"received_at":%q}`, time.Now().Format(time.RFC3339Nano)))
		rep := waitExit(t, done, out, stderr)
		if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
			t.Errorf("stopped after %v, want about 300ms", el)
		}
		if rep.Received != 1 || rep.Latency.Count != 1 || rep.Interrupted {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("signal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		addr, done, out, stderr := startReceiveMode(t, ctx)
		postBody(t, "http://"+addr+"/", `{"received_at":"2020-01-01T00:00:00.123456789Z"}`)
		if code := postBody(t, "http://"+addr+"/", ``); code != 200 {
			t.Errorf("empty body: %d", code)
		}
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
			t.Errorf("PUT: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("receiver did not stop")
		}
		out.mu.Lock()
		text := out.buf.String()
		out.mu.Unlock()
		for _, want := range []string{"received:    2 (with received_at 1, without 1, invalid 0)", "interrupted:", "p99="} {
			if !strings.Contains(text, want) {
				t.Errorf("text report lacks %q:\n%s", want, text)
			}
		}
	})
}

func TestReceiveFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--receive", "127.0.0.1:0", "--floor", "127.0.0.1:0"},
		{"--receive", "127.0.0.1:0", "--url", "http://x"},
		{"--receive", "127.0.0.1:0", "--requests", "-1"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), context.Background(), args, io.Discard, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
	// No --secret needed.
	cfg, err := parseFlags([]string{"--receive", "127.0.0.1:0"}, io.Discard)
	if err != nil || cfg.receiveAddr != "127.0.0.1:0" {
		t.Errorf("parseFlags: %+v %v", cfg, err)
	}
}
