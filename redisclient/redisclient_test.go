package redisclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/internal/testenv"
	"github.com/sockjsd/sockjsd/redisclient"
)

// TestNew: a URL names one server or a Redis Cluster, and a bad URL's
// error says what is wrong without echoing a password. Every client ends
// a command at its context's deadline (ContextTimeoutEnabled), whatever
// the URL's read_timeout.
func TestNew(t *testing.T) {
	cases := []struct {
		url     string
		where   string // "" for an error
		errHas  string
		cluster func(t *testing.T, o *redis.ClusterOptions)
	}{
		{url: "redis://127.0.0.1:6379/2", where: "127.0.0.1:6379/2"},
		{url: "redis://h", where: "h:6379/0"},
		{url: "redis://h?read_timeout=-1", where: "h:6379/0"},
		{url: "rediss://h:6380/1?read_timeout=5s", where: "h:6380/1"},
		{url: "redis+cluster://h1:7000?read_timeout=-1", where: "cluster h1:7000"},
		{url: "redis+cluster://h1:7000,h2:7001,h3", where: "cluster h1:7000,h2:7001,h3:6379"},
		{url: "redis+cluster://[::1]:7000,[::1]", where: "cluster [::1]:7000,[::1]:6379"},
		{url: "rediss+cluster://u:s3cret@h1:7000,h2:7001/0?dial_timeout=3&read_timeout=2s", where: "cluster h1:7000,h2:7001",
			cluster: func(t *testing.T, o *redis.ClusterOptions) {
				if o.Username != "u" || o.Password != "s3cret" || o.TLSConfig == nil || o.TLSConfig.ServerName != "h1" ||
					o.DialTimeout != 3*time.Second || o.ReadTimeout != 2*time.Second {
					t.Errorf("options %+v", o)
				}
			}},
		{url: "redis+cluster://:s3cret@h1:7000/1", errHas: "only database 0"},
		{url: "redis+cluster://h1:7000,,h2", errHas: "none empty"},
		{url: "redis+cluster://", errHas: "none empty"},
		{url: "redis+cluster://h1:7000?nope=1", errHas: "nope"},
		{url: "redis+cluster://:s3cret@h1:7000?%zz", errHas: "query"},
		{url: "redis://:s3cret@h1:port/0", errHas: "not a redis"},
		{url: "http://h1:7000", errHas: "not a redis"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			rdb, err := redisclient.New(c.url)
			if c.where == "" {
				if err == nil {
					defer rdb.Close()
					t.Fatalf("no error, client for %s", redisclient.Where(rdb))
				}
				if !strings.Contains(err.Error(), c.errHas) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q: want it to name %q and not the password", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			if where := redisclient.Where(rdb); where != c.where {
				t.Errorf("Where = %q, want %q", where, c.where)
			}
			cc, isCluster := rdb.(*redis.ClusterClient)
			if isCluster != strings.Contains(c.url, "+cluster") {
				t.Fatalf("client %T for %s", rdb, c.url)
			}
			if c, ok := rdb.(*redis.Client); ok && !c.Options().ContextTimeoutEnabled {
				t.Errorf("%s: the client does not end commands at their contexts' deadlines (ContextTimeoutEnabled)", c.Options().Addr)
			}
			if isCluster {
				o := cc.Options()
				if !o.ContextTimeoutEnabled {
					t.Error("the cluster client does not end commands at their contexts' deadlines (ContextTimeoutEnabled)")
				}
				if c.cluster != nil {
					c.cluster(t, o)
				}
			}
		})
	}
}

// TestFollowFailover: on a Redis Cluster with a replica per master, a
// master killed and failed over, a client with FollowFailover writes to
// the failed-over slot within a few retries of the failover; a client
// without it keeps sending the slot to the dead master (go-redis reloads
// its slot map every 60 s otherwise), which shows the test can fail.
func TestFollowFailover(t *testing.T) {
	rc := testenv.StartRedisClusterReplicated(t, time.Second)
	const key = "failover-key"
	following, err := redisclient.New(rc.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer following.Close()
	plain := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs, ContextTimeoutEnabled: true})
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []redis.UniversalClient{following, plain} {
		if err := c.Set(ctx, key, "before", 0).Err(); err != nil {
			t.Fatal(err) // both learn the slot map and reach the master
		}
	}
	dead := rc.KillMasterOf(t, key)
	rc.WaitFailover(t, key, dead, 20*time.Second)

	// One command each, with go-redis's default retries (3, backoff
	// from 8 ms): the first attempt on the dead master asks for the
	// reload, a retry finds the new master.
	set := func(c redis.UniversalClient) error {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return c.Set(sctx, key, "after", 0).Err()
	}
	var ferr error
	for try := 0; try < 3; try++ { // a reload is asked at most every 200 ms
		if ferr = set(following); ferr == nil {
			break
		}
	}
	if ferr != nil {
		t.Fatalf("with FollowFailover: SET after the failover: %v", ferr)
	}
	if err := set(plain); err == nil {
		t.Fatal("without FollowFailover the SET reached the new master too: the test shows nothing")
	} else if ctx.Err() != nil {
		// The failure must be the dead master's, not the test's time
		// running out.
		t.Fatalf("the test's context ended: %v (%v)", ctx.Err(), err)
	}
	if got, err := following.Get(ctx, key).Result(); err != nil || got != "after" {
		t.Fatalf("GET after the failover: %q, %v", got, err)
	}
}
