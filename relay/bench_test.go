package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	svix "github.com/svix/svix-webhooks/go"
)

// Benchmarks of the ingest path. docs/bench.sh measures the real binary
// under load; these isolate the relay's own share of the work:
//
//	go test -run '^$' -bench 'Ingest' -benchtime 10s ./relay
//
// BenchmarkIngestHandler is the handler alone (verify, JSON check, rule
// routing, metrics) over a store that keeps nothing; BenchmarkIngestJetStream
// is a real server (embedded JetStream, delivery to two fake sinks running
// concurrently) driven over loopback HTTP by about 64 concurrent posters,
// reporting accepted events per second.

// acceptAllStore is a Store that keeps nothing and never reports a
// duplicate, so a benchmark can replay a small pool of signed requests.
type acceptAllStore struct{}

func (acceptAllStore) Append(context.Context, Event) (bool, error) { return false, nil }
func (acceptAllStore) Ready(context.Context) error                 { return nil }

// discardResponse is a reusable http.ResponseWriter that keeps only the
// status code.
type discardResponse struct {
	hdr  http.Header
	code int
}

func (w *discardResponse) Header() http.Header         { return w.hdr }
func (w *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardResponse) WriteHeader(code int)        { w.code = code }

// BenchmarkIngestHandler measures the ingest handler alone on a pool of 1024
// requests, each with a distinct message id, signed before the timer starts
// (at testNow, the handler's fixed clock). Per iteration: a fresh body
// reader and the handler; no network, no store.
func BenchmarkIngestHandler(b *testing.B) { benchIngestHandler(b, sampleBody) }

// BenchmarkIngestHandler1KiB is BenchmarkIngestHandler with a body of
// exactly 1 KiB (sampleBody padded), the size of a typical Recall event.
func BenchmarkIngestHandler1KiB(b *testing.B) {
	pad := 1024 - len(sampleBody) - len(`,"pad":""`)
	body := sampleBody[:len(sampleBody)-1] + `,"pad":"` + strings.Repeat("x", pad) + `"}`
	if len(body) != 1024 {
		b.Fatalf("body is %d bytes, want 1024", len(body))
	}
	benchIngestHandler(b, body)
}

// BenchmarkIngestBadSignature is BenchmarkIngestHandler with requests
// signed by another secret: what a flood of forged requests costs, to set
// against BenchmarkIngestHandler (docs/benchmarks.md, Security):
//
//	go test -run XXX -bench 'IngestHandler$|IngestBadSignature' -benchtime 10000x -count 6 ./relay
func BenchmarkIngestBadSignature(b *testing.B) {
	benchIngest(b, sampleBody, "whsec_bm90LXRoZS1yZWxheXMtc2VjcmV0", http.StatusUnauthorized)
}

func benchIngestHandler(b *testing.B, sample string) {
	benchIngest(b, sample, testSecret, http.StatusOK)
}

// benchIngest sends requests signed with secret to the ingest handler (the
// store accepts everything at once) and expects the answer want.
func benchIngest(b *testing.B, sample, secret string, want int) {
	const pool = 1024
	h := newTestIngest(b, acceptAllStore{})
	body := []byte(sample)
	reqs := make([]*http.Request, pool)
	for i := range reqs {
		reqs[i] = signed(b, secret, fmt.Sprintf("msg_bench%023d", i), testNow, sample, "svix")
	}
	w := &discardResponse{hdr: make(http.Header)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tmpl := reqs[i%pool]
		i++
		r := *tmpl // shallow copy: headers are only read
		r.Body = io.NopCloser(bytes.NewReader(body))
		clear(w.hdr)
		w.code = 0
		h.ServeHTTP(w, &r)
		if w.code != want {
			b.Fatalf("status %d, want %d", w.code, want)
		}
	}
}

// startBenchServer starts a real relay (embedded JetStream in a temp dir,
// sinks a and b fake and instant, the twoRules routing) with storage.sync
// set to syncMode, and stops it when the benchmark ends.
func startBenchServer(b *testing.B, syncMode string) *Server {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(testServerConfig(filepath.Join(dir, "data"), twoRules)), 0o600); err != nil {
		b.Fatal(err)
	}
	environ := []string{"RELAY_STORAGE__SYNC=" + syncMode}
	tr := &testRegistry{}
	cfg, err := LoadConfig(path, LoadOptions{Environ: environ, Registry: tr.registry()})
	if err != nil {
		b.Fatal(err)
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: environ, Logger: discardLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			b.Errorf("stop: %v", err)
		}
	})
	return srv
}

// benchPosters is how many goroutines post concurrently in
// BenchmarkIngestJetStream (rounded up to a multiple of GOMAXPROCS).
const benchPosters = 64

// BenchmarkIngestJetStream posts signed events to a real server over
// loopback HTTP from about 64 goroutines, for storage.sync "always" (an
// fsync per JetStream write batch) and "1s". Each request is signed in the
// loop with a fresh id (a few µs of client work). Metrics: events/s accepted
// (200 "accepted"), client-side latency percentiles, and non-2xx answers
// (expected 0).
func BenchmarkIngestJetStream(b *testing.B) {
	for _, mode := range []string{"always", "1s"} {
		b.Run("sync="+mode, func(b *testing.B) {
			srv := startBenchServer(b, mode)
			url := "http://" + srv.IngestAddr() + "/webhooks/recall"
			client := &http.Client{
				Transport: &http.Transport{
					Proxy:               nil,
					DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
					MaxIdleConns:        2 * benchPosters,
					MaxIdleConnsPerHost: 2 * benchPosters,
					IdleConnTimeout:     time.Minute,
					DisableCompression:  true,
				},
				Timeout: 30 * time.Second,
			}
			defer client.CloseIdleConnections()
			wh, err := svix.NewWebhook(testSecret)
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(sampleBody)
			var (
				seq, accepted, rejected atomic.Int64
				mu                      sync.Mutex
				latencies               []time.Duration
			)
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchPosters + procs - 1) / procs)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var lat []time.Duration
				for pb.Next() {
					id := "msg_bench" + strconv.FormatInt(seq.Add(1), 10)
					start := time.Now()
					sig, err := wh.Sign(id, start, body)
					if err != nil {
						b.Error(err)
						return
					}
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("svix-id", id)
					req.Header.Set("svix-timestamp", strconv.FormatInt(start.Unix(), 10))
					req.Header.Set("svix-signature", sig)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					answer, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					lat = append(lat, time.Since(start))
					if resp.StatusCode == http.StatusOK && strings.Contains(string(answer), `"accepted"`) {
						accepted.Add(1)
					} else {
						rejected.Add(1)
					}
				}
				mu.Lock()
				latencies = append(latencies, lat...)
				mu.Unlock()
			})
			b.StopTimer()
			if el := b.Elapsed().Seconds(); el > 0 {
				b.ReportMetric(float64(accepted.Load())/el, "events/s")
			}
			slices.Sort(latencies)
			if len(latencies) > 0 {
				pct := func(p float64) float64 {
					i := min(int(p/100*float64(len(latencies))), len(latencies)-1)
					return float64(latencies[i]) / float64(time.Millisecond)
				}
				b.ReportMetric(pct(50), "p50-ms")
				b.ReportMetric(pct(99), "p99-ms")
			}
			b.ReportMetric(float64(rejected.Load()), "non2xx")
		})
	}
}

// BenchmarkEmbeddedPublish publishes 1 KiB messages to a JetStream stream of
// an embedded server (file storage, synced every second, as storage.sync
// 1s) from about 64 goroutines, each waiting for its acknowledgement as
// Append does, over three connections: net.Pipe as nats-server hands it
// out (unbuffered), the same through a pipeConn (what the relay uses), and
// loopback TCP (127.0.0.1, a random port, a token). It is what decided to
// keep the in-process connection; see relay/inprocess.go.
func BenchmarkEmbeddedPublish(b *testing.B) {
	for _, conn := range []string{"pipe", "pipeConn", "tcp"} {
		b.Run("conn="+conn, func(b *testing.B) {
			opts := &server.Options{
				ServerName: "bench", JetStream: true, StoreDir: b.TempDir(),
				DontListen: true, NoSigs: true, NoLog: true, SyncInterval: time.Second,
			}
			if conn == "tcp" {
				opts.DontListen, opts.Host, opts.Port, opts.Authorization = false, "127.0.0.1", -1, "bench-token"
			}
			ns, err := server.NewServer(opts)
			if err != nil {
				b.Fatal(err)
			}
			ns.Start()
			defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
			if !ns.ReadyForConnections(30 * time.Second) {
				b.Fatal("server not ready")
			}
			var nc *nats.Conn
			switch conn {
			case "pipe":
				nc, err = nats.Connect("", nats.InProcessServer(ns))
			case "pipeConn":
				nc, err = nats.Connect("", nats.InProcessServer(inProcess{ns}))
			case "tcp":
				nc, err = nats.Connect(ns.ClientURL(), nats.Token("bench-token"))
			}
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
				Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage,
			}); err != nil {
				b.Fatal(err)
			}
			data := bytes.Repeat([]byte("x"), 1024)
			var seq atomic.Int64
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchPosters + procs - 1) / procs)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := &nats.Msg{Subject: "bench.x", Data: data, Header: nats.Header{}}
					m.Header[jetstream.MsgIDHeader] = []string{strconv.FormatInt(seq.Add(1), 10)}
					reply, err := nc.RequestMsg(m, publishTimeout)
					if err != nil {
						b.Error(err)
						return
					}
					if !bytes.HasPrefix(reply.Data, []byte(`{"stream":"BENCH"`)) {
						b.Errorf("ack %s", reply.Data)
						return
					}
				}
			})
			b.StopTimer()
			if el := b.Elapsed().Seconds(); el > 0 {
				b.ReportMetric(float64(b.N)/el, "msgs/s")
			}
		})
	}
}
