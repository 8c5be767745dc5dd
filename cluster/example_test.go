package cluster_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sockjsd/sockjsd/cluster"
	"github.com/sockjsd/sockjsd/services"
	"github.com/sockjsd/sockjsd/transport"
	"github.com/sockjsd/sockjsd/transport/gorillamux"
)

// One node of a cluster: every node runs this with its own Self and the
// same Redis and Secret, behind a round-robin balancer. Each service that
// should be clustered gets the node as transport.Options.Cluster; a
// service leaves the cluster, releasing its sessions' records, in
// Handler.Shutdown. (Not run: it needs a Redis server.)
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.2:6379", ContextTimeoutEnabled: true})
	ttl := 30 * time.Second // how long a dead node's sessions keep pointing at it
	node, err := cluster.New(cluster.Options{
		Store:        cluster.NewRedisStore(rdb, cluster.RedisStoreOptions{TTL: ttl}),
		Self:         "http://10.0.0.5:8081", // how the other nodes reach this one
		Secret:       []byte(os.Getenv("SOCKJSD_CLUSTER_SECRET")),
		KeepInterval: ttl / 3,
		Observer:     cluster.NewMetrics(prometheus.DefaultRegisterer),
	})
	if err != nil {
		log.Fatal(err) // no store, no secret, or a Self that is not http(s)://host:port
	}

	echo := transport.New("/echo", transport.Options{Cluster: node}, services.Echo)
	r := mux.NewRouter()
	r.SkipClean(true)
	gorillamux.Mount(r, echo)
	srv := &http.Server{Addr: ":8081", Handler: r}
	go func() { log.Println(srv.ListenAndServe()) }()

	// ... until the process is told to stop:
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = srv.Shutdown(ctx) }()
	_ = echo.Shutdown(ctx) // closes the sessions (1001) and releases their records
}

// Ping is a readiness check for a load balancer: a node whose Redis does
// not answer cannot tell who owns a session, so it should get no traffic.
// (Not run: it needs a Redis server.)
func ExamplePing() {
	rdb := redis.NewClient(&redis.Options{Addr: "10.0.0.2:6379", ContextTimeoutEnabled: true})
	ready := cluster.Ping(rdb)
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "redis: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}
