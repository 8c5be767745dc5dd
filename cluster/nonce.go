package cluster

import (
	"errors"
	"sync"
	"time"
)

// errReplayed: a forwarded request's nonce was seen before.
var errReplayed = errors.New("nonce seen before: a replayed request")

// errNoncesFull: the nonces of the skew window fill the cache; a request
// is refused rather than the cache grown.
var errNoncesFull = errors.New("too many forwarded requests within the skew window to remember their nonces")

// nonceCache remembers the nonces of forwarded requests until their
// signature is too old to pass anyway, in at most max entries (about 40
// bytes each).
type nonceCache struct {
	mu     sync.Mutex
	max    int
	m      map[[nonceLen]byte]int64 // nonce -> unix nanoseconds it may be forgotten at
	swept  time.Time
	sweeps int // for tests
}

// nonceSweepEvery is how often expired nonces are dropped; when the cache
// is full they are dropped at most every nonceSweepFull.
const (
	nonceSweepEvery = time.Second
	nonceSweepFull  = 50 * time.Millisecond
)

// add records nonce until expires, or says why not: seen before, or the
// cache full of nonces that have not expired.
func (c *nonceCache) add(nonce [nonceLen]byte, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[nonceLen]byte]int64)
	}
	if since := now.Sub(c.swept); since >= nonceSweepEvery || (len(c.m) >= c.max && since >= nonceSweepFull) {
		c.sweep(now)
	}
	if _, seen := c.m[nonce]; seen {
		return errReplayed
	}
	if len(c.m) >= c.max {
		return errNoncesFull
	}
	c.m[nonce] = expires.UnixNano()
	return nil
}

func (c *nonceCache) sweep(now time.Time) {
	t := now.UnixNano()
	for k, exp := range c.m {
		if exp < t {
			delete(c.m, k)
		}
	}
	c.swept = now
	c.sweeps++
}

func (c *nonceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
