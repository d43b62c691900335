package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name StartSentinel's sentinels monitor.
const SentinelMaster = "relaymaster"

// Sentinel is a Redis master with replicas, watched by Redis Sentinel processes
// (redis-server --sentinel), all on loopback ports, for tests.
type Sentinel struct {
	// Data holds the master first, then the replicas, as started; after a failover the master
	// is another one of them (see Master).
	Data      []*Server
	Sentinels []*Server
	// MasterName is the monitored master's name (SentinelMaster).
	MasterName string
}

// StartSentinel starts a master, replicas replicas of it and sentinels sentinels monitoring
// it (quorum: a majority of the sentinels), waits until every replica is in sync and every
// sentinel knows the replicas, and kills them all when t ends. The sentinels declare the
// master down only after a minute, so that on a loaded machine they start no failover of
// their own (Failover forces one), and allow a failover every 5s. Like Start, it skips (or fails with
// RELAY_REQUIRE_REDIS=1) without redis-server.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	if replicas < 1 || sentinels < 1 {
		t.Fatalf("redistest: sentinel setup needs a replica and a sentinel, got %d and %d", replicas, sentinels)
	}
	bin := lookBin(t)
	st := &Sentinel{MasterName: SentinelMaster}
	// No 5s wait for more replicas before a diskless full sync.
	master := StartWith(t, "--repl-diskless-sync-delay", "0")
	st.Data = append(st.Data, master)
	for range replicas {
		st.Data = append(st.Data, StartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()), "--repl-diskless-sync-delay", "0"))
	}
	for _, r := range st.Data[1:] {
		waitFor(t, 20*time.Second, func() (bool, string) {
			info, err := command(r.Addr(), "INFO", "replication")
			return err == nil && strings.Contains(info, "master_link_status:up"), info
		}, "replica %s in sync", r.Addr())
	}
	quorum := sentinels/2 + 1
	for range sentinels {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
			"sentinel down-after-milliseconds %[1]s 60000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", st.MasterName, master.Port(), quorum)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		st.Sentinels = append(st.Sentinels, startServer(t, bin, dir, conf, []string{"--sentinel"}))
	}
	for _, s := range st.Sentinels {
		waitFor(t, 20*time.Second, func() (bool, string) {
			n, err := command(s.Addr(), "SENTINEL", "REPLICAS", st.MasterName)
			return err == nil && n == strconv.Itoa(replicas), n
		}, "sentinel %s to know %d replicas", s.Addr(), replicas)
	}
	return st
}

// URL returns a go-redis failover URL naming every sentinel:
// redis://s1:p1?addr=s2:p2&addr=s3:p3 (use it with master name MasterName).
func (st *Sentinel) URL() string { return seedURL(st.Sentinels) }

// MasterAddr returns the master's address as the first sentinel reports it.
func (st *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	v, err := commandArray(st.Sentinels[0].Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", st.MasterName)
	if err != nil || len(v) != 2 {
		t.Fatalf("redistest: SENTINEL GET-MASTER-ADDR-BY-NAME: %v %q", err, v)
	}
	return net.JoinHostPort(v[0], v[1])
}

// Master returns the data server that is the master now.
func (st *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	addr := st.MasterAddr(t)
	for _, s := range st.Data {
		if s.Addr() == addr {
			return s
		}
	}
	t.Fatalf("redistest: sentinel reports master %s, not one of the started servers", addr)
	return nil
}

// Failover makes the first sentinel fail the master over to a replica (SENTINEL FAILOVER,
// retried while the sentinel has no replica it considers good yet) and waits until every
// sentinel reports the new master, the new master accepts writes and the other original
// replicas replicate from it. It returns the new master.
//
// The old master is not waited for: a sentinel turns it into a replica of the new master
// only when it next polls it (up to 10s later). With one replica, the new master has no
// replica until then (writes that wait for a replica, WAIT or min_replicas, fail meanwhile);
// start two replicas to avoid that.
func (st *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	old := st.MasterAddr(t)
	waitFor(t, 30*time.Second, func() (bool, string) {
		_, err := command(st.Sentinels[0].Addr(), "SENTINEL", "FAILOVER", st.MasterName)
		if err != nil && strings.Contains(err.Error(), "INPROG") {
			err = nil
		}
		return err == nil, fmt.Sprint(err)
	}, "SENTINEL FAILOVER to start")
	var now string
	waitFor(t, 30*time.Second, func() (bool, string) {
		for _, s := range st.Sentinels {
			v, err := commandArray(s.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", st.MasterName)
			if err != nil || len(v) != 2 {
				return false, fmt.Sprint(v, err)
			}
			now = net.JoinHostPort(v[0], v[1])
			if now == old {
				return false, "still " + old
			}
		}
		info, err := command(now, "INFO", "replication")
		return err == nil && strings.Contains(info, "role:master") &&
			strings.Count(info, "state=online") >= len(st.Data)-2, info
	}, "failover away from %s", old)
	return st.Master(t)
}

// waitFor polls cond every 50ms until it holds, failing t after timeout with cond's last
// detail.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string), format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waiting for %s: %s", fmt.Sprintf(format, args...), detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// commandArray sends one command on a fresh connection and returns its array reply as
// strings (nested arrays are flattened; a nil reply is an empty slice).
func commandArray(addr string, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, encodeCommand(args)); err != nil {
		return nil, err
	}
	var out []string
	err = readReply(bufio.NewReader(c), &out)
	return out, err
}

// encodeCommand encodes args as a RESP array of bulk strings.
func encodeCommand(args []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// readReply reads one RESP2 reply, appending its scalar values to out.
func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '-':
		return fmt.Errorf("%s", line[1:])
	case '+', ':':
		*out = append(*out, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
