package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiveDownUntilAndKeys: with --down-until the receiver refuses every
// POST with 503 until the file exists; with --count-keys it counts distinct
// Idempotency-Key values and repeats, in /stats and in the report.
func TestReceiveDownUntilAndKeys(t *testing.T) {
	up := filepath.Join(t.TempDir(), "up")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done, out, stderr := startReceiveMode(t, ctx, "--down-until", up, "--count-keys", "--json")
	post := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hook", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, key := range []string{"k1", "k2"} {
		if code := post(key); code != http.StatusServiceUnavailable {
			t.Fatalf("while down: %d, want 503", code)
		}
	}
	if err := os.WriteFile(up, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k1", "k1", "k2"} {
		if code := post(key); code != http.StatusOK {
			t.Fatalf("once up: %d, want 200", code)
		}
	}
	if err := os.Remove(up); err != nil {
		t.Fatal(err)
	}
	if code := post("k3"); code != http.StatusOK {
		t.Fatalf("up stays up: %d, want 200", code)
	}
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st receiveStats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused != 2 || st.Received != 4 || st.Keys != 3 || st.Repeats != 1 {
		t.Errorf("stats %+v, want 2 refused, 4 received, 3 keys, 1 repeat", st)
	}
	cancel()
	if rep := waitExit(t, done, out, stderr); rep.Refused != 2 || rep.Keys != 3 || rep.Repeats != 1 {
		t.Errorf("report %+v, want 2 refused, 3 keys, 1 repeat", rep)
	}
}
