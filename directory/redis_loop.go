package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// loop refreshes this node's deadline every TTL/3 and reaps every
// ReapInterval, until Close.
func (d *Redis) loop() {
	defer d.done.Done()
	refresh := time.NewTicker(max(d.opts.TTL/3, time.Millisecond))
	defer refresh.Stop()
	reap := time.NewTicker(d.opts.ReapInterval)
	defer reap.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-refresh.C:
			d.refresh()
		case <-reap.C:
			d.reap()
		}
	}
}

// refresh moves this node's deadline: one round trip for all of its
// sessions. It also notices what needs a resync: Redis lost the records
// (another generation), a reaper closed some of ours as lost (we paused
// or were cut off past the TTL), or an earlier refresh failed (so either
// may have happened unseen); and it retries the removals that failed.
//
// Once Close began it sends nothing more and acts on no answer (see
// whileOpen).
func (d *Redis) refresh() {
	ctx, cancel := context.WithTimeout(d.life, d.opts.Timeout)
	defer cancel()
	d.mu.Lock()
	gen := d.gen
	d.mu.Unlock()
	v, err := d.eval(ctx, refreshScript, d.args(gen, 0)...).Result()
	if err != nil {
		d.failed(err, true)
		return
	}
	check := false
	if !d.whileOpen(func() {
		var a []any
		a, err = d.reply(v, "refresh")
		d.mu.Lock()
		check = d.check || errors.Is(err, errGen) || (err == nil && len(a) > 1 && a[1] == int64(1))
		d.check = false
		d.mu.Unlock()
		if err != nil && !errors.Is(err, errGen) {
			d.opts.Logger.Warn("directory: refresh", "err", err)
		}
	}) || (err != nil && !errors.Is(err, errGen)) {
		return
	}
	if check {
		if err := d.resync(ctx, true); err != nil {
			d.failed(err, true)
			return
		}
	}
	if err := d.retryUndone(ctx); err != nil {
		d.failed(err, false)
		return
	}
	d.whileOpen(d.down.ok)
}

// failed notes a failed call of the loop unless Close began: an outage
// (logged once) and, with recheck, a comparison with Redis at the next
// refresh that gets through.
func (d *Redis) failed(err error, recheck bool) {
	d.whileOpen(func() {
		d.down.fail(err)
		if recheck {
			d.mu.Lock()
			d.check = true
			d.mu.Unlock()
		}
	})
}

// resync brings Redis back in line with this node's sessions, holding
// syncMu alone so that no Add or Remove is in flight.
//
// When Redis's generation is not the one this node knew, Redis lost its
// data (a restart without persistence): the node's sessions, and those
// whose removal is still to be retried, are put back without events (the
// backends were told of them already, and their removal then emits
// session.closed as usual). Otherwise, when announce is set, the
// sessions Redis no longer has were closed as lost by a reaper while this
// node was cut off or paused: they are added again with their events
// (session.opened, and user.online for a user that went offline
// meanwhile), so that what the backends were told matches what is live.
func (d *Redis) resync(ctx context.Context, announce bool) error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	g, err := genScript.Run(ctx, d.rdb, []string{d.genK}, randomHex(16)).Text()
	if err != nil {
		return fmt.Errorf("directory: generation: %w", err)
	}
	d.mu.Lock()
	lost := d.gen != "" && d.gen != g
	var restore []Entry
	if lost || announce {
		for _, e := range d.live {
			restore = append(restore, e)
		}
	}
	if lost {
		for _, u := range d.undone {
			if u.added {
				restore = append(restore, u.e)
			}
		}
	}
	d.mu.Unlock()
	n, err := d.restore(ctx, g, restore, lost)
	if err != nil {
		return err
	}
	if !d.whileOpen(func() {
		switch {
		case lost:
			d.opts.Logger.Warn("directory: redis lost the directory's records; this node's sessions put back without events", "sessions", n)
		case n > 0:
			d.opts.Logger.Warn("directory: sessions of this node closed as lost were added again", "sessions", n)
		}
		d.mu.Lock()
		d.gen = g
		d.mu.Unlock()
	}) {
		return ErrClosed
	}
	return nil
}

// restore runs addScript for es in pipelines of restoreBatch and returns
// how many records it wrote.
func (d *Redis) restore(ctx context.Context, gen string, es []Entry, quiet bool) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	// Load once, then EvalSha in pipelines: a pipeline cannot fall back
	// from NOSCRIPT to EVAL per command.
	if err := addScript.Load(ctx, d.rdb).Err(); err != nil {
		return 0, fmt.Errorf("directory: load script: %w", err)
	}
	n := 0
	for len(es) > 0 {
		k := min(len(es), restoreBatch)
		pipe := d.rdb.Pipeline()
		cmds := make([]*redis.Cmd, k)
		for i, e := range es[:k] {
			cmds[i] = addScript.EvalSha(ctx, pipe, []string{d.genK}, d.addArgs(gen, e, quiet)...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return n, fmt.Errorf("directory: restore %d sessions: %w", k, err)
		}
		var rerr error
		if !d.whileOpen(func() {
			for i, c := range cmds {
				a, err := d.reply(c.Val(), "restore")
				switch {
				case errors.Is(err, errGen):
					rerr = err // Redis lost its data again: the next refresh starts over
					return
				case errors.Is(err, ErrExists):
					d.opts.Logger.Warn("directory: a session of this node is held by another", "session", es[i].ID)
				case err != nil:
					rerr = err
					return
				case len(a) > 2 && (a[1] != int64(0) || a[2] != int64(0) || quiet):
					n++ // events (or, quiet, a write we cannot tell from a no-op: counted all the same)
				}
			}
		}) {
			return n, ErrClosed
		}
		if rerr != nil {
			return n, rerr
		}
		es = es[k:]
	}
	return n, nil
}

// retryUndone retries the removals that failed, holding syncMu alone so
// that an Add of the same id cannot run in between.
func (d *Redis) retryUndone(ctx context.Context) error {
	d.mu.Lock()
	if len(d.undone) == 0 {
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	gen := d.gen
	todo := make(map[string]undoing, len(d.undone))
	for id, u := range d.undone {
		todo[id] = u
	}
	d.mu.Unlock()
	for id, u := range todo {
		v, err := d.eval(ctx, removeScript, d.args(gen, removeEvents, id, u.code, u.reason)...).Result()
		if err != nil {
			return err
		}
		if !d.whileOpen(func() {
			if _, err = d.reply(v, "remove"); err == nil {
				d.forget(id, u)
			}
		}) {
			return ErrClosed
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// reap closes the sessions of dead nodes and emits due offlines: scripts
// of at most ReapBatch each, at most maxReapCalls a round. The first
// carries few event ids (most rounds find nothing); when it reports more
// work, the next ones carry enough for a full batch.
//
// Once Close began it sends nothing more and acts on no answer (see
// whileOpen).
func (d *Redis) reap() {
	ctx, cancel := context.WithTimeout(d.life, d.opts.Timeout)
	defer cancel()
	ids := 8
	for range maxReapCalls {
		v, err := d.eval(ctx, reapScript,
			d.args("", ids, d.opts.ReapBatch, CodeNodeLost, ReasonNodeLost)...).Result()
		if err != nil {
			d.failed(err, false)
			return
		}
		more := false
		if !d.whileOpen(func() {
			a, err := d.reply(v, "reap")
			if err != nil {
				d.opts.Logger.Warn("directory: reap", "err", err)
				return
			}
			more = len(a) >= 6 && a[5] == int64(1)
		}) || !more {
			return
		}
		ids = 3 * d.opts.ReapBatch
	}
}
