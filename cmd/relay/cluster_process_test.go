package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
