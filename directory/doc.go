// Package directory is where every gateway session lives and who is
// online: the proxy records each accepted session (Add) and its end
// (Remove), answers a backend's "which sessions does user u1 have, on
// which node" (ByUser, Lookup), and the directory enqueues the lifecycle
// webhooks (package webhook) that tell of it.
package directory
