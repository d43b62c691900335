package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of primaries (no replicas) on loopback ports, for tests.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n redis-server processes in cluster mode, splits the 16384 hash slots
// evenly among them, joins them, and waits until every node reports cluster_state:ok. The
// nodes are killed when t ends. Like Start, it skips (or fails with RELAY_REQUIRE_REDIS=1)
// without redis-server.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("redistest: cluster of %d nodes", n)
	}
	c := &Cluster{}
	for range n {
		c.Nodes = append(c.Nodes, StartWith(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
		))
	}
	const slots = 16384
	for i, s := range c.Nodes {
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if _, err := command(s.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			t.Fatalf("redistest: assign slots %d-%d to %s: %v", lo, hi, s.Addr(), err)
		}
	}
	for _, s := range c.Nodes[1:] {
		if _, err := command(c.Nodes[0].Addr(), "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.Port())); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", s.Addr(), err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, err := command(s.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster not ready: %v %q", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr()
	}
	return out
}

// URL returns a go-redis cluster URL: redis://h1:p1?addr=h2:p2&addr=h3:p3.
func (c *Cluster) URL() string { return seedURL(c.Nodes) }

// seedURL returns redis://a1?addr=a2&addr=a3 for servers' addresses, the form of go-redis
// cluster and failover URLs.
func seedURL(servers []*Server) string {
	u := "redis://" + servers[0].Addr()
	for i, s := range servers[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

// command sends one command on a fresh connection and returns its reply: a status,
// integer or bulk string as text; an error reply as an error.
func command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, encodeCommand(args)); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case line == "":
		return "", fmt.Errorf("empty reply")
	case line[0] == '-':
		return "", fmt.Errorf("%s", line[1:])
	case line[0] == '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line[1:], nil
}

// ConnectedClients returns INFO clients' connected_clients of the redis-server at addr,
// asked over a connection of its own (counted in the answer).
func ConnectedClients(addr string) (int, error) {
	info, err := command(addr, "INFO", "clients")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_clients:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("INFO clients without connected_clients: %q", info)
}
