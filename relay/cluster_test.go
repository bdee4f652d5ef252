package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks"
)

// startCluster starts n clustered JetStream servers on loopback with random
// ports and waits until JetStream answers.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	// A clustered server starts its route listener only after JetStream is
	// up, which waits for peers: reserve the cluster ports first, so that
	// every server can be given the routes to all the others.
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*server.Server
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "relay-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	for i, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %d not ready", i+1)
		}
	}
	nc, err := nats.Connect(clientURLs(servers))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Ready means what the test needs: a stream with three replicas can be
	// placed, i.e. every peer is known to the meta group.
	placed := poll(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY_PROBE", Subjects: []string{"ready.probe"}, Replicas: n})
		if err == nil {
			err = js.DeleteStream(ctx, "READY_PROBE")
		}
		return err == nil
	})
	if !placed {
		t.Fatalf("JetStream cluster cannot place %d replicas after 60s: %v", n, err)
	}
	return servers
}

func clientURLs(servers []*server.Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// TestClusterNodeLoss runs the relay against a 3-node cluster with
// replicas: 3, stops one node in the middle of the load, and checks that
// every acknowledged event is delivered.
func TestClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := startCluster(t, 3)
	tr := &testRegistry{}
	var mu sync.Mutex
	delivered := map[string]bool{}
	tr.set("a", func(_ context.Context, d sinks.Delivery) error {
		mu.Lock()
		delivered[d.MsgID] = true
		mu.Unlock()
		return nil
	})
	yaml := strings.Replace(testServerConfig(t.TempDir(), twoRules), "  ack_wait: 5s\n",
		"  ack_wait: 5s\n  url: "+clientURLs(servers)+"\n  replicas: 3\n", 1)
	h := startHarness(t, tr, yaml)

	const total, workers = 1500, 8
	var next, acked atomic.Int64
	var ackedIDs sync.Map
	var stopped sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				id := fmt.Sprintf("msg_c%d", i)
				code, _ := h.post(id, sampleBody)
				if code == 200 {
					ackedIDs.Store(id, true)
					if acked.Add(1) == total/3 {
						stopped.Do(func() { go servers[2].Shutdown() })
					}
				}
			}
		}()
	}
	wg.Wait()
	var want []string
	ackedIDs.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	t.Logf("%d of %d events acknowledged with a node stopped at %d", len(want), total, total/3)
	if len(want) < total/2 {
		t.Fatalf("only %d events acknowledged", len(want))
	}
	eventually(t, 60*time.Second, "every acknowledged event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range want {
			if !delivered[id] {
				return false
			}
		}
		return true
	})
}

// clusterConfig is testServerConfig against the cluster of servers, with
// three replicas.
func clusterConfig(t *testing.T, servers []*server.Server, rules string) string {
	return strings.Replace(testServerConfig(t.TempDir(), rules), "  ack_wait: 5s\n",
		"  ack_wait: 5s\n  url: "+clientURLs(servers)+"\n  replicas: 3\n", 1)
}

// startWithin starts a relay on yaml and fails the test unless it is ready
// within limit; the relay is stopped at the end of the test. Safe to call
// from several goroutines.
func startWithin(t *testing.T, yaml string, limit time.Duration) {
	tr := &testRegistry{}
	path := writeConfig(t, yaml)
	cfg, err := LoadConfig(path, LoadOptions{Environ: []string{}, Registry: tr.registry()})
	if err != nil {
		t.Error(err)
		return
	}
	srv := New(cfg, Options{Registry: tr.registry(), ConfigPath: path, Environ: []string{}, Logger: newTestLogger(t)})
	// The budget cmd/relay gives a start; the test wants far less.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	err = srv.Start(ctx)
	took := time.Since(began)
	if err != nil {
		t.Errorf("start: %v (after %s)", err, took.Round(time.Millisecond))
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	if took > limit {
		t.Errorf("relay ready after %s, want at most %s", took.Round(time.Millisecond), limit)
	}
	t.Logf("relay ready in %s", took.Round(time.Millisecond))
}

// TestClusterRelaysStartTogether starts two relays at the same moment on a
// fresh cluster: both must be ready within seconds, not the start budget.
// Before each setup request had its own timeout, both waited a whole
// minute on a stream creation the cluster never answered.
func TestClusterRelaysStartTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := startCluster(t, 3)
	yaml := clusterConfig(t, servers, twoRules)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			startWithin(t, yaml, 15*time.Second)
		}()
	}
	wg.Wait()
}

// TestClusterRestartDuringElection starts a relay while the cluster's
// meta leader is down and a new one is being elected: it must be ready
// within seconds.
func TestClusterRestartDuringElection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := startCluster(t, 3)
	yaml := clusterConfig(t, servers, twoRules)
	// A first relay creates the streams and consumers, and stops.
	h := startHarness(t, nil, yaml)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := h.srv.store.events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop the node that leads the events stream, so that the stream, and
	// the meta group if that node led it too, elect a new leader.
	for _, s := range servers {
		if s.Name() == info.Cluster.Leader {
			t.Logf("stopping %s (meta leader: %v)", s.Name(), s.JetStreamIsLeader())
			s.Shutdown()
		}
	}
	startWithin(t, yaml, 15*time.Second)
}

// TestClusterSharedConfig: relays on one cluster run one config. The first
// relay's file becomes the cluster's; a relay started with a divergent file
// follows the cluster's, says so in its log, never creates the queue of a
// sink only its file names, and never drops the queue of a sink its older
// file lacks; a reload of one relay reaches every other.
func TestClusterSharedConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := startCluster(t, 3)
	a := startHarness(t, nil, clusterConfig(t, servers, twoRules))
	newer := strings.Replace(clusterConfig(t, servers, twoRules+`
  - name: only-here
    when: "true"
    sinks: [c]
`), "sinks:\n  a:\n", "sinks:\n  c:\n    type: fake\n  a:\n", 1)
	b := startHarness(t, nil, newer)
	if _, ok := b.srv.Config().Sinks["c"]; ok {
		t.Fatal("the relay with a divergent file runs its own config, want the cluster's")
	}
	if got := ruleNames(b.srv.Config()); got != "failures,everything" {
		t.Fatalf("relay b runs rules %s, want the cluster's failures,everything", got)
	}
	older := strings.Replace(clusterConfig(t, servers, "rules:\n  - name: failures\n    when: status == \"failed\"\n    sinks: [a]\n"),
		"  b:\n    type: fake\n", "", 1)
	c, logs := startLoggedServer(t, older)
	if _, ok := c.Config().Sinks["b"]; !ok || ruleNames(c.Config()) != "failures,everything" {
		t.Fatalf("the relay with an older file runs sinks %v and rules %s, want the cluster's", c.Config().Sinks, ruleNames(c.Config()))
	}
	if !strings.Contains(logs.String(), "this relay's config file differs from the cluster's shared config") {
		t.Errorf("the relay with an older file does not say that it follows the cluster's config:\n%s", logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.srv.store.events.Consumer(ctx, sinkConsumerName("c")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("consumer of sink c: got %v, want none", err)
	}
	if _, err := a.srv.store.events.Consumer(ctx, sinkConsumerName("b")); err != nil {
		t.Errorf("consumer of sink b after a relay whose file lacks b started: %v", err)
	}

	// One reload of relay a shares its new file; every relay applies it.
	a.rewriteConfig(clusterConfig(t, servers, twoRules+`
  - name: added
    when: event == "recording.done"
    sinks: [b]
`))
	if err := a.srv.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(a.srv.Config()); got != "failures,everything,added" {
		t.Errorf("relay a after its reload: rules %s", got)
	}
	for name, srv := range map[string]*Server{"b": b.srv, "c": c} {
		eventually(t, 10*time.Second, "relay "+name+" to run the shared config", func() bool {
			return ruleNames(srv.Config()) == "failures,everything,added"
		})
	}
	// Each relay keeps its own listeners.
	if a.srv.IngestAddr() == b.srv.IngestAddr() || b.srv.IngestAddr() == c.IngestAddr() {
		t.Error("two relays on one address")
	}
	// A reload of a file that does not validate changes nothing anywhere.
	a.rewriteConfig(clusterConfig(t, servers, "rules:\n  - name: broken\n    when: nonsense ==\n    sinks: [a]\n"))
	if err := a.srv.Reload(ctx); err == nil {
		t.Error("reload of an invalid file succeeded")
	}
	for name, srv := range map[string]*Server{"b": b.srv, "c": c} {
		if got := ruleNames(srv.Config()); got != "failures,everything,added" {
			t.Errorf("relay %s after a failed reload elsewhere: rules %s", name, got)
		}
	}
}

// startLoggedServer starts a server on yaml (stopped at the end of the
// test) whose JSON log lines go to the returned buffer.
func startLoggedServer(t *testing.T, yaml string) (*Server, *relaytest.LockedBuffer) {
	t.Helper()
	logs := &relaytest.LockedBuffer{}
	srv := startServerLogging(t, &testRegistry{}, yaml, slog.New(slog.NewJSONHandler(logs, nil)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return srv, logs
}

func ruleNames(cfg *Config) string {
	var names []string
	for _, r := range cfg.Rules {
		names = append(names, r.Name)
	}
	return strings.Join(names, ",")
}
