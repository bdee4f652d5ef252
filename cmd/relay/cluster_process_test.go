package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relay-dev/relay/relay/relaytest"
	"github.com/relay-dev/relay/sinks/slack/slacktest"
)

var (
	natsBuildOnce sync.Once
	natsBin       string
	natsBuildErr  error
)

// natsServerBinary builds nats-server from the module this repository pins,
// once per test run.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsBuildOnce.Do(func() {
		dir := filepath.Dir(binary(t, "relay"))
		natsBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			natsBuildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBin
}

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name            string
	client, monitor string // host:port
	args            []string
	cmd             *exec.Cmd
	done            chan error
	logs            *lockedBuffer
}

// freePorts reserves n loopback ports by listening on port 0, and frees
// them for the caller to use at once.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startNATSCluster runs n clustered nats-server processes with JetStream on
// loopback and waits until a stream with n replicas can be placed.
func startNATSCluster(t *testing.T, n int) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	ports := freePorts(t, 3*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
	}
	var nodes []*natsNode
	for i := range n {
		nd := &natsNode{
			name:    fmt.Sprintf("n%d", i+1),
			client:  fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			monitor: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
		}
		nd.args = []string{
			"--name", nd.name, "--addr", "127.0.0.1", "--port", fmt.Sprint(ports[3*i]),
			"--http_port", fmt.Sprint(ports[3*i+2]),
			"--jetstream", "--store_dir", t.TempDir(),
			"--cluster_name", "relay-test", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i+1]),
			"--routes", strings.Join(routes, ","),
		}
		nd.start(t, bin)
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		eventually(t, 30*time.Second, nd.name+" accepting connections", func() bool {
			c, err := net.DialTimeout("tcp", nd.client, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	js := natsClient(t, nodes)
	eventually(t, 60*time.Second, fmt.Sprintf("a stream with %d replicas placed", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY_PROBE", Subjects: []string{"ready.probe"}, Replicas: n})
		if err == nil {
			err = js.DeleteStream(ctx, "READY_PROBE")
		}
		return err == nil
	})
	return nodes
}

func (nd *natsNode) start(t *testing.T, bin string) {
	t.Helper()
	nd.logs = &lockedBuffer{}
	nd.cmd = exec.Command(bin, nd.args...)
	nd.cmd.Stdout, nd.cmd.Stderr = nd.logs, nd.logs
	nd.done = make(chan error, 1)
	if err := nd.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := nd.cmd, nd.done
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// kill9 kills the node with SIGKILL: no leadership is handed over.
func (nd *natsNode) kill9() {
	_ = nd.cmd.Process.Kill()
	<-nd.done
}

// isMetaLeader asks the node's monitoring endpoint whether it leads the
// JetStream meta group.
func (nd *natsNode) isMetaLeader() bool {
	resp, err := http.Get("http://" + nd.monitor + "/jsz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	return json.NewDecoder(resp.Body).Decode(&jsz) == nil && jsz.Meta.Leader == nd.name
}

func clusterURL(nodes []*natsNode) string {
	var urls []string
	for _, nd := range nodes {
		urls = append(urls, "nats://"+nd.client)
	}
	return strings.Join(urls, ",")
}

func natsClient(t *testing.T, nodes []*natsNode) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(clusterURL(nodes), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestClusterRestartWhileNodeDown restarts a relay right after the NATS
// node leading the JetStream meta group was killed with SIGKILL, as in a
// machine failure. Before each setup request had its own timeout and was
// sent again, the relay waited on a request the cluster never answered
// during the election, for the whole start budget, and exited.
func TestClusterRestartWhileNodeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-process NATS cluster")
	}
	nodes := startNATSCluster(t, 3)
	dir := t.TempDir()
	config := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`
storage:
  url: %s
  replicas: 3
sources:
  recall:
    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
sinks:
  archive:
    type: file
    path: %s/archive.jsonl
rules:
  - name: everything
    when: "true"
    sinks: [archive]
`, clusterURL(nodes), dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A first relay creates the streams and its consumer, then stops.
	first := startRelay(t, dir, config)
	first.stop(15, 30*time.Second) // SIGTERM

	var leader *natsNode
	eventually(t, 30*time.Second, "a meta leader", func() bool {
		for _, nd := range nodes {
			if nd.isMetaLeader() {
				leader = nd
				return true
			}
		}
		return false
	})
	leader.kill9()
	began := time.Now()
	second := startRelay(t, dir, config)
	took := time.Since(began)
	t.Logf("relay ready %s after %s was killed", took.Round(time.Millisecond), leader.name)
	if took > 20*time.Second {
		t.Errorf("relay took %s to start while a node was down, want seconds\n%s", took, second.logs)
	}
	eventually(t, 30*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + second.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// duplicates counts the ids seen more than once and the extra copies.
func (s *idSet) duplicates() (ids, extra int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.ids {
		if n > 1 {
			ids++
			extra += n - 1
		}
	}
	return ids, extra
}

// faultConfig is the fault test's config: every event to an HTTP receiver
// and a file sink, the scenario's (recordingScenario) Slack sink, rule and
// expectation.
func faultConfig(nodes []*natsNode, secret, receiverURL, slackURL string, within time.Duration) string {
	slackSink, slackRule, expectations := scenarioConfig(slackURL, within)
	return fmt.Sprintf(`
storage:
  url: %s
  replicas: 3
  ack_wait: 2s
sources:
  recall:
    secrets: [%s]
sinks:
  api:
    type: http
    url: %s/events
    concurrency: 16
  archive:
    type: file
    path: ./archive.jsonl
    concurrency: 16%s
retry:
  initial_interval: 50ms
  max_interval: 1s
rules:
  - name: everything
    when: "true"
    sinks: [api, archive]%s%s`, clusterURL(nodes), secret, receiverURL, slackSink, slackRule, expectations)
}

// loadRun is one relay-load process and the file of the ids it got a 2xx for.
type loadRun struct {
	cmd *exec.Cmd
	ids string
}

// startLoad runs relay-load against relay p with args added.
func startLoad(t *testing.T, p *relayProcess, secret string, args ...string) loadRun {
	t.Helper()
	events, _ := filepath.Abs("../../configs/examples/events")
	ids := filepath.Join(t.TempDir(), "ids.txt")
	cmd := exec.Command(binary(t, "relay-load"), append([]string{
		"--url", "http://" + p.ingest + "/webhooks/recall", "--secret", secret,
		"--events", events, "--concurrency", "16", "--timeout", "5s", "--ids-out", ids}, args...)...)
	cmd.Stdout, cmd.Stderr = &lockedBuffer{}, &lockedBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return loadRun{cmd, ids}
}

// TestClusterFaultUnderLoad is the scale-out fault test with real
// processes: three nats-server processes, three relays started at the same
// moment on one config, signed load spread over all of them, and the lives
// of recordings (recordingScenario) played over all of them; mid-load one
// relay and one NATS node are killed with SIGKILL, the relay restarts
// while the node is down, then the node. Every acknowledged event must
// reach the HTTP receiver and a file sink, duplicates only as at-least-once
// allows (counted by Idempotency-Key); each recording gets one Slack
// thread; each missed expectation is injected once. It prints its figures.
func TestClusterFaultUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-process NATS cluster and three relays")
	}
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	const within = 3 * time.Second
	began := time.Now()
	nodes := startNATSCluster(t, 3)
	received := &idSet{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.add(r.Header.Get("Idempotency-Key"))
	}))
	defer receiver.Close()
	slack := slacktest.New(t)
	config := faultConfig(nodes, secret, receiver.URL, slack.APIURL(), within)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "relay.yaml"), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The relays start at the same moment on the fresh cluster.
	starting := time.Now()
	relays := startRelays(t, "relay.yaml", dirs...)
	var stopped []*relayProcess // relays killed during the test, for their logs
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range append(stopped, relays...) {
				t.Logf("relay process %d, its warnings and errors:\n%s", i+1, p.problems(40))
			}
		}
	})
	t.Logf("%d relays started together, ready in %s", len(relays), time.Since(starting).Round(time.Millisecond))
	if took := time.Since(starting); took > 20*time.Second {
		t.Errorf("%d relays took %s to start together, want seconds", len(relays), took)
	}
	var loads []loadRun
	for _, p := range relays {
		loads = append(loads, startLoad(t, p, secret, "--rate", "170", "--duration", "12s"))
	}
	lb := newIngestAddrs(relays)
	scenario := newRecordingScenario(lb, secret, within)
	played := make(chan struct{})
	go func() {
		defer close(played)
		scenario.run(40, 250*time.Millisecond)
	}()

	eventually(t, 60*time.Second, "1,000 deliveries before the kills", func() bool { return received.len() >= 1000 })
	victim := nodes[1]
	relays[0].kill()
	stopped = append(stopped, relays[0])
	victim.kill9()
	atKill := received.len()
	t.Logf("killed relay 1 and NATS %s with SIGKILL after %d deliveries", victim.name, atKill)
	// The NATS node's streams and consumers elect new leaders first: seconds
	// on an idle machine, far longer on CI's two cores with every package's
	// tests running at once.
	// Deliveries go on: 500 more reach the receiver, or the sinks' consumers
	// have a leader again and nothing left to deliver or to settle (after
	// the kills the ingest may have little left to add, and the events
	// relay 1 held are delivered again once their ack wait runs out).
	var lastLook time.Time
	goingOn := func() bool {
		if received.len() >= atKill+500 {
			return true
		}
		if time.Since(lastLook) < time.Second {
			return false
		}
		lastLook = time.Now()
		return consumersSettled(nodes, "relay-sink-api", "relay-sink-archive")
	}
	if !relaytest.Poll(120*time.Second, goingOn) {
		// Say where the deliveries stopped before failing: the consumers
		// as the cluster sees them, and each live relay's workers.
		t.Logf("received %d, %d after the kills", received.len(), received.len()-atKill)
		t.Logf("consumers:\n%s", consumerStates(nodes, "relay-sink-api", "relay-sink-archive"))
		for i, p := range relays[1:] {
			t.Logf("relay %d:\n%s", i+2, p.deliveryState())
		}
		t.Fatal("timed out after 2m0s waiting for deliveries going on through the other relays")
	}
	// Relay 1 restarts while the NATS node is still down, then the node.
	restarting := time.Now()
	relays[0] = startRelay(t, dirs[0], "relay.yaml")
	lb.set(0, relays[0].ingest)
	t.Logf("relay 1 restarted with NATS %s down, ready in %s", victim.name, time.Since(restarting).Round(time.Millisecond))
	victim.start(t, natsServerBinary(t))
	loads = append(loads, startLoad(t, relays[0], secret, "--requests", "1000"))
	var acked []string
	for _, l := range loads {
		_ = l.cmd.Wait() // requests to the killed relay fail: only 2xx ids are counted
		acked = append(acked, readLines(t, l.ids)...)
	}
	<-played
	scenario.checkSent(t)
	acked = append(acked, scenario.acked...)
	if len(acked) < 2000 {
		t.Fatalf("only %d events acknowledged; the test wants at least 2,000", len(acked))
	}
	checkDelivered(t, acked, received, dirs, relays)
	th := scenario.checkThreads(t, slack)
	stored, lines := scenario.checkMissed(t, dirs, relays[1])
	dupIDs, extra := received.duplicates()
	t.Logf("figures: %d events acknowledged over %d relays, all delivered to the HTTP receiver and the file sinks; %d distinct ids at the receiver, %d of them more than once (%d extra copies, at least once); %s in all",
		len(acked), len(relays), received.len(), dupIDs, extra, time.Since(began).Round(time.Second))
	t.Logf("figures: %s", scenario.summary(th, stored, lines))
	for _, p := range relays {
		if code := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("exit after SIGTERM: %d", code)
		}
	}
}

// checkDelivered waits until every acknowledged id has reached the
// receiver and the file sink of one of dirs.
func checkDelivered(t *testing.T, acked []string, received *idSet, dirs []string, relays []*relayProcess) {
	t.Helper()
	var missHTTP, missFile []string
	if poll(90*time.Second, func() bool {
		files := &idSet{}
		for _, d := range dirs {
			for _, id := range fileIDs(filepath.Join(d, "archive.jsonl")).list() {
				files.add(id)
			}
		}
		missHTTP, missFile = received.missing(acked), files.missing(acked)
		return len(missHTTP) == 0 && len(missFile) == 0
	}) {
		return
	}
	var logs strings.Builder
	for i, p := range relays {
		fmt.Fprintf(&logs, "relay %d:\n%s\n", i+1, tail(p.logs.String(), 2000))
	}
	t.Fatalf("%d of %d acknowledged events never reached the HTTP receiver (e.g. %v), %d never reached a file sink (e.g. %v)\n%s",
		len(missHTTP), len(acked), first(missHTTP), len(missFile), first(missFile), logs.String())
}

// consumerInfos asks any live node of the cluster for the named consumers
// of RELAY_EVENTS; a consumer's entry holds its info or why there is none.
func consumerInfos(nodes []*natsNode, names ...string) ([]*jetstream.ConsumerInfo, []error) {
	infos, errs := make([]*jetstream.ConsumerInfo, len(names)), make([]error, len(names))
	nc, err := nats.Connect(clusterURL(nodes), nats.Timeout(5*time.Second))
	if err == nil {
		defer nc.Close()
	}
	var js jetstream.JetStream
	if err == nil {
		js, err = jetstream.New(nc)
	}
	for i, name := range names {
		if err != nil {
			errs[i] = err
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, cerr := js.Consumer(ctx, "RELAY_EVENTS", name)
		if cerr == nil {
			infos[i], cerr = c.Info(ctx)
		}
		cancel()
		errs[i] = cerr
	}
	return infos, errs
}

// consumersSettled reports whether each named consumer of RELAY_EVENTS has
// a leader that answers and no message pending or awaiting its ack.
func consumersSettled(nodes []*natsNode, names ...string) bool {
	infos, errs := consumerInfos(nodes, names...)
	for i, info := range infos {
		if errs[i] != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.NumPending != 0 || info.NumAckPending != 0 {
			return false
		}
	}
	return true
}

// consumerStates describes the named consumers of RELAY_EVENTS as any live
// node of the cluster answers, for a failure message.
func consumerStates(nodes []*natsNode, names ...string) string {
	infos, errs := consumerInfos(nodes, names...)
	var b strings.Builder
	for i, info := range infos {
		if errs[i] != nil {
			fmt.Fprintf(&b, "  %s: %v\n", names[i], errs[i])
			continue
		}
		leader := ""
		if info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		fmt.Fprintf(&b, "  %s: leader %q, pending %d, ack pending %d, waiting pulls %d, redelivered %d, delivered %d, ack floor %d\n",
			names[i], leader, info.NumPending, info.NumAckPending, info.NumWaiting, info.NumRedelivered, info.Delivered.Stream, info.AckFloor.Stream)
	}
	return b.String()
}
