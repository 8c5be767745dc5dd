// Package directory is where every gateway session lives and who is
// online: the proxy records each session it accepts (Add) and its end
// (Remove), backends ask which sessions a user has and on which node
// (ByUser, Lookup), and the directory enqueues the lifecycle webhooks
// (package webhook) that tell of it.
//
// Memory (NewMemory) serves one node: maps, and one timer for the
// earliest pending offline. Redis (NewRedis) serves many nodes sharing a
// Redis; both emit the same events in the same order.
//
// # Events
//
// Add enqueues session.opened, then user.online when it is the user's
// first live session across the cluster. Remove enqueues session.closed
// (with the close code and reason); when it was the user's last session,
// user.offline follows OfflineDelay later (default 5s) unless a session
// of the user is added before: a user who reloads a page never goes
// offline, and gets no second user.online. Sessions without a user get
// session events only. Event ids are 16 crypto-random bytes in hex. A
// user's events share a queue partition (webhook.Partition of the order
// key) and are enqueued in the order of the state changes; events
// without a user are ordered by session.
//
// A full queue costs the event, never the state change: it is counted
// (Dropped) and logged once per full episode.
//
// # Redis: keys
//
// Every key is under "<prefix>{webhook}:dir:" (prefix default
// "sockjsd:"), the hash tag of the webhook queues, so that one Lua script
// can change the directory and push to a queue on Redis Cluster too (the
// price: the directory and the queues live on one shard):
//
//	gen          string  the generation: a random value written when Redis has none
//	s:<id>       hash    service, user, transport, node, remote, inst, opened (Unix ms)
//	u:<user>     set     the user's session ids
//	n:<inst>     set     the session ids an instance (one process) holds
//	nodes        zset    instance → deadline (Unix ms, Redis's clock)
//	due          zset    user → when their user.offline is due (Unix ms)
//	r:<inst>     string  "a reaper closed some of your sessions" (1 day)
//
// On Redis Cluster the scripts declare only the generation key (the
// others are derived inside them, in the same slot). While that slot
// migrates between nodes, Redis refuses a script's undeclared keys that
// are on the other node, and a script stopped half-way would keep its
// first writes (a session removed without its session.closed: seen with
// a live migration). So each script first touches two keys that never
// exist, which Redis refuses while the slot migrates, before any write;
// a refused call changed nothing, and is retried (5ms to 100ms apart)
// until the migration ends, for at most 5s or the caller's deadline:
// calls wait for the move rather than fail or half succeed.
//
// Liveness is per instance (a random id per NewRedis), not per Node name,
// so that a node restarting under the same name does not keep its
// previous life's sessions alive.
//
// The scripts need Redis 6.2 or later (GETDEL, ZADD GT).
//
// # Redis: why Lua, why TIME
//
// Each state change and the events telling of it are one script, and the
// script pushes the event JSON (built with cjson, with the field names of
// webhook.Event and its omitempty) onto the partition's list itself
// (RPUSH to webhook.RedisQueueKey, unless the list holds MaxQueue, then
// PUBLISH of the partition number on webhook.RedisWakeChannel). So a node
// dying between the change and the enqueue cannot lose an event, and two
// nodes cannot both emit it: scripts run one at a time, and the reaping
// script only emits for what it removes. Event ids come from Go (Lua has
// no crypto-random source), a few per call.
//
// Deadlines, due times and event times come from Redis's TIME inside the
// scripts: nodes whose clocks disagree still agree on when a node expired
// or an offline is due.
//
// # Redis: liveness and node death
//
// Each node moves its instance's deadline to now + TTL (default 15s)
// every TTL/3: one round trip for all of its sessions, however many.
// Every node reaps every ReapInterval (default 1s): the sessions of
// instances whose deadline passed are removed with session.closed, code
// 1006 (CodeNodeLost: the connection ended without a close frame),
// reason "Node lost", and their users' offlines are scheduled as for any
// close; due offlines are emitted for users still without a session.
// A script handles at most ReapBatch sessions (default 100), so a dead
// node with many sessions does not block Redis for long. So after kill -9,
// its sessions are closed within TTL + ReapInterval, and their users go
// offline OfflineDelay + ReapInterval later. Lookup and ByUser do not
// report sessions of an instance past its deadline, even before they are
// reaped.
//
// A node that was taken for dead but was not (a pause, a partition from
// Redis past the TTL) finds the mark a reaper left (or its own failed
// refreshes) and adds its sessions back with session.opened (and
// user.online for a user that went offline meanwhile), so that the
// backends' view matches what is live again.
//
// # Redis: outages and restarts
//
// While Redis is down, Add, Remove, Lookup and ByUser return the error,
// wrapped with what failed: the proxy decides what to do. A failed Remove
// is retried at every refresh until it gets through (then its
// session.closed is emitted, with its code); a failed Add is not in the
// directory, and a record it may have left (a lost reply) is removed with
// code 1011 (CodeAddFailed) unless Add is called again.
//
// When Redis comes back empty (a restart without persistence), the
// generation is gone: the first call or refresh of each node notices,
// writes a new one (one node wins), and the node puts back its live
// sessions, and those whose removal it still has to retry, without
// events: the backends were told of them already. What is lost with the
// data, and not recovered: the events still queued, the offlines that
// were pending (those users never get user.offline), and the sessions of
// nodes that died during the outage (never closed: nobody holds them).
//
// Redis.Close returns within 1 s whatever Redis does, frozen included,
// and with a client without ContextTimeoutEnabled (whose commands go-redis
// ends only at the read timeout, never with read_timeout=-1): it cancels
// the refresh and reaping loop's calls and waits at most 1 s for the loop.
// A call it stopped waiting for ends at the client's read timeout or when
// the client is closed, and the loop then returns without acting on the
// answer; a refresh that still runs in Redis moves this node's deadline,
// and its sessions are closed as lost TTL after it, as a dead node's are.
//
// # Bounds
//
// ByUser returns at most MaxByUser entries (default 1000). Memory holds
// at most MaxSessions sessions (default 1,000,000). Each Redis queue
// partition holds at most MaxQueue events (default 100,000). Reaping runs
// at most 50 scripts of ReapBatch a round. The Redis directory keeps at
// most 100,000 failed Adds for cleanup. A resync (after a restart or a
// reap of a live node) writes in pipelines of 500 and blocks this node's
// Add and Remove while it runs.
package directory
