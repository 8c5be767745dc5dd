package redisclient_test

import (
	"fmt"
	"log"

	"github.com/sockjsd/sockjsd/redisclient"
)

// A client for a Redis Cluster from the seeds, as -redis takes them: it
// ends commands at their contexts' deadlines and follows failovers. The
// same client goes to cluster.NewRedisStore, hub.NewRedisBroker and the
// gateway's directory.
func ExampleNew() {
	rdb, err := redisclient.New("redis+cluster://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3")
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()
	fmt.Println(redisclient.Where(rdb))
	// Output: cluster 10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379
}
