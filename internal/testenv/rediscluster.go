package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/redisslot"
)

// RedisCluster is a Redis Cluster of three masters (no replicas) started
// for one test, without persistence, in the test's temporary directory.
type RedisCluster struct {
	// Addrs are the masters' host:port, each a seed for
	// redis.ClusterOptions.Addrs.
	Addrs []string
	// URL is a redis+cluster URL naming every master, the form the
	// binary's -redis flag takes.
	URL string

	nodes []*Redis
}

// clusterMasters is the number of masters: the fewest redis-cli's
// --cluster create accepts without replicas.
const clusterMasters = 3

// StartRedisCluster starts three Debian redis-server masters with
// cluster-enabled on free loopback ports, joins them with `redis-cli
// --cluster create`, waits until every node reports cluster_state:ok and
// stops them when the test ends. It skips the test under -short or when
// redis-server or redis-cli is not installed.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 0, 5*time.Second)
}

// StartRedisClusterReplicated is StartRedisCluster with a replica per
// master (six nodes) and a node timeout of nodeTimeout: a master that
// stops answering for that long is failed over to its replica
// (KillMasterOf, WaitFailover).
func StartRedisClusterReplicated(t testing.TB, nodeTimeout time.Duration) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 1, nodeTimeout)
}

func startRedisCluster(t testing.TB, replicas int, nodeTimeout time.Duration) *RedisCluster {
	t.Helper()
	SkipIfShort(t, "redis-server and redis-cli (Redis Cluster)")
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, tool+" on PATH (Debian: apt-get install redis-server redis-tools)")
		}
	}
	rc := &RedisCluster{}
	for len(rc.nodes) < clusterMasters*(1+replicas) {
		port := clusterPort(t)
		r := &Redis{t: t, dir: t.TempDir(), port: port, args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
			// Replicas sync at once, not after Redis 7's 5 s wait for
			// more replicas to share the transfer.
			"--repl-diskless-sync-delay", "0",
		}}
		r.Addr = "127.0.0.1:" + strconv.Itoa(port)
		r.URL = "redis://" + r.Addr
		r.start()
		t.Cleanup(r.Stop)
		rc.nodes = append(rc.nodes, r)
		rc.Addrs = append(rc.Addrs, r.Addr)
	}
	rc.URL = "redis+cluster://" + strings.Join(rc.Addrs, ",")

	args := append([]string{"--cluster", "create"}, rc.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rc.waitOK(t, 30*time.Second)
	if replicas > 0 {
		rc.waitSynced(t, 30*time.Second)
	}
	return rc
}

// waitSynced waits until every replica's link to its master is up and its
// first sync done: a replica killed before that has no data, and refuses
// to take over from its master.
func (rc *RedisCluster) waitSynced(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, n := range rc.nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			info, err := c.Info(ctx, "replication").Result()
			cancel()
			if err == nil && (strings.Contains(info, "role:master") ||
				strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0")) {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				t.Fatalf("replica %s not in sync within %v: %v\n%s", n.Addr, d, err, info)
			}
			time.Sleep(20 * time.Millisecond) // polling the replica, bounded by the deadline
		}
		_ = c.Close()
	}
}

// KillMasterOf kills (SIGKILL) the master serving key's slot and returns
// its address: its replica takes over once the node timeout passed
// (WaitFailover).
func (rc *RedisCluster) KillMasterOf(t testing.TB, key string) string {
	t.Helper()
	for addr := range rc.Masters(t, key) {
		for _, n := range rc.nodes {
			if n.Addr == addr {
				n.Stop()
				return addr
			}
		}
	}
	t.Fatalf("no master of %q among the cluster's nodes", key)
	return ""
}

// WaitFailover waits (up to d) until a node other than dead, the master
// KillMasterOf killed, serves key's slot as master and every live node
// reports cluster_state:ok.
func (rc *RedisCluster) WaitFailover(t testing.TB, key, dead string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var live string
	for _, a := range rc.Addrs {
		if a != dead {
			live = a
			break
		}
	}
	for {
		ok := true
		for _, a := range rc.Addrs {
			if a == dead {
				continue
			}
			if info, err := clusterInfo(a); err != nil || info["cluster_state"] != "ok" {
				ok = false
			}
		}
		if ok {
			c := redis.NewClient(&redis.Options{Addr: live, DialTimeout: time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			shards, err := c.ClusterShards(ctx).Result()
			cancel()
			_ = c.Close()
			if err == nil && masterOf(shards, hashSlot(key)) != "" && masterOf(shards, hashSlot(key)) != dead {
				return
			}
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command("redis-cli", "-u", "redis://"+live, "CLUSTER", "NODES").CombinedOutput()
			var logs strings.Builder
			for _, n := range rc.nodes {
				if n.Addr == dead {
					continue
				}
				matches, _ := filepath.Glob(filepath.Join(n.dir, "redis-*.log"))
				for _, m := range matches {
					b, _ := os.ReadFile(m)
					fmt.Fprintf(&logs, "--- %s %s:\n%s\n", n.Addr, filepath.Base(m), tailLines(string(b), 12))
				}
			}
			t.Fatalf("no failover of %s's slot within %v; CLUSTER NODES on %s:\n%s\nlogs:\n%s", key, d, live, out, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's state, bounded by the deadline
	}
}

// masterOf is the address of the master serving slot in shards ("" if
// none is up).
func masterOf(shards []redis.ClusterShard, slot int) string {
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if int64(slot) < r.Start || int64(slot) > r.End {
				continue
			}
			for _, n := range sh.Nodes {
				if n.Role == "master" && n.Health == "online" {
					return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
		}
	}
	return ""
}

// clusterPort is a free loopback port whose cluster bus port (port+10000)
// is free too, both below the kernel's ephemeral range (see FreePort).
func clusterPort(t testing.TB) int {
	t.Helper()
	// A range starting low leaves bus ports inside it: then some may be.
	return freePortBelow(t, max(ephemeralLow()-10000, 11000), 10000)
}

// waitOK polls CLUSTER INFO on every node until each reports
// cluster_state:ok and knows all the masters, or fails the test after d.
func (rc *RedisCluster) waitOK(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, addr := range rc.Addrs {
		for {
			info, err := clusterInfo(addr)
			if err == nil && info["cluster_state"] == "ok" &&
				info["cluster_known_nodes"] == strconv.Itoa(len(rc.nodes)) &&
				info["cluster_slots_ok"] == "16384" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster node %s not ok within %v: %v %v", addr, d, info, err)
			}
			time.Sleep(20 * time.Millisecond) // poll interval, bounded by the deadline
		}
	}
}

// clusterInfo sends CLUSTER INFO over a raw connection (no client to set
// up while the cluster forms) and parses its "key:value" lines.
func clusterInfo(addr string) (map[string]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("CLUSTER INFO\r\n")); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(head, "$") {
		return nil, fmt.Errorf("CLUSTER INFO: %q", strings.TrimSpace(head))
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return nil, fmt.Errorf("CLUSTER INFO length %q: %w", head, err)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, err
	}
	info := map[string]string{}
	for _, line := range strings.Split(string(buf[:n]), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			info[k] = v
		}
	}
	return info, nil
}

// Stop kills every node.
func (rc *RedisCluster) Stop() {
	for _, n := range rc.nodes {
		n.Stop()
	}
}

// Client is a go-redis cluster client on rc, closed when the test ends.
// It does not retry (MaxRetries -1), like the single-node tests' clients,
// so that a CROSSSLOT or routing error shows at once.
func (rc *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Masters are the masters (host:port) serving keys' slots, as the
// cluster reports them (CLUSTER SHARDS), for a test to show that its keys
// spread over several shards.
func (rc *RedisCluster) Masters(t testing.TB, keys ...string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, sh := range rc.shards(t, rc.Addrs[0]) {
		for _, k := range keys {
			slot := int64(hashSlot(k))
			for _, r := range sh.Slots {
				if slot >= r.Start && slot <= r.End {
					for _, n := range sh.Nodes {
						if n.Role == "master" {
							out[net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))] = true
						}
					}
				}
			}
		}
	}
	return out
}

// shards is CLUSTER SHARDS as the node at addr answers it.
func (rc *RedisCluster) shards(t testing.TB, addr string) []redis.ClusterShard {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SHARDS: %v", err)
	}
	return shards
}

// hashSlot is Redis Cluster's slot of key (redisslot.Slot).
func hashSlot(key string) int { return redisslot.Slot(key) }

// Reshard moves n slots (every one it has when n is 0) from the master
// at from to the master at to (host:port of two of rc.Addrs) with
// `redis-cli --cluster reshard`, live:
// keys migrate while clients keep working (MOVED and ASK redirects), and
// returns when redis-cli is done and every node agrees on the new map.
func (rc *RedisCluster) Reshard(t testing.TB, from, to string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		out, err := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "CLUSTER", "MYID").Output()
		if err != nil {
			t.Fatalf("CLUSTER MYID on %s: %v", addr, err)
		}
		return strings.TrimSpace(string(out))
	}
	if n <= 0 {
		n = rc.slotsOf(t, from)
	}
	out, err := exec.CommandContext(ctx, "redis-cli", "--cluster", "reshard", from,
		"--cluster-from", id(from), "--cluster-to", id(to), "--cluster-slots", strconv.Itoa(n),
		"--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	rc.waitOK(t, 30*time.Second)
}

// slotsOf counts the slots the master at addr serves.
func (rc *RedisCluster) slotsOf(t testing.TB, addr string) int {
	t.Helper()
	n := 0
	for _, sh := range rc.shards(t, addr) {
		for _, nd := range sh.Nodes {
			if nd.Role == "master" && net.JoinHostPort(nd.IP, strconv.FormatInt(nd.Port, 10)) == addr {
				for _, r := range sh.Slots {
					n += int(r.End - r.Start + 1)
				}
			}
		}
	}
	return n
}

// MoveSlot migrates the slot of key to the master at to (one of
// rc.Addrs), live, the way redis-cli's reshard moves each slot: the target
// imports it, the source migrates it, its keys move per at a time
// (MIGRATE; redis-cli moves ten), then every master assigns the slot to
// the target. batch, when not nil, runs after each batch of keys moved:
// the slot is then half migrated, the case clients must survive. It
// returns the source.
func (rc *RedisCluster) MoveSlot(t testing.TB, key, to string, per int, batch func()) (from string) {
	t.Helper()
	for a := range rc.Masters(t, key) {
		from = a
	}
	if from == to {
		t.Fatalf("the slot of %q is on %s already", key, to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clients := map[string]*redis.Client{}
	for _, a := range rc.Addrs {
		clients[a] = redis.NewClient(&redis.Options{Addr: a, DialTimeout: time.Second})
		defer clients[a].Close()
	}
	src, dst := clients[from], clients[to]
	srcID, err := src.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	slot := hashSlot(key)
	must := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	host, port, _ := net.SplitHostPort(to)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, per).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src, args...)
		if batch != nil {
			batch()
		}
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	must(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for a, c := range clients {
		if a != from && a != to {
			must(c, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		}
	}
	rc.waitOK(t, 30*time.Second)
	return from
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
