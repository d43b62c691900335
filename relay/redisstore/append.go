package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eventrelay/eventrelay/relay"
)

// appendScript is the whole of an append, atomic in Redis:
//
//	KEYS[1] stream, KEYS[2] dedupe marker
//	ARGV[1] serialized event, ARGV[2] dedupe window in ms,
//	ARGV[3] MINID threshold or "", ARGV[4] MAXLEN or ""
//
// It returns {1, original id} when the marker exists (a duplicate: nothing is written), else
// appends, sets the marker (NX PX window) to the new id and returns {0, new id}.
//
// The MINID threshold is computed from the client's clock and passed in, rather than from
// TIME inside the script, so the script stays deterministic for script replication. When
// both limits are set, XADD trims by MAXLEN and an XTRIM by MINID follows.
var appendScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[2])
if prev then
  return {1, prev}
end
local id
if ARGV[4] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'e', ARGV[1])
  if ARGV[3] ~= '' then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3])
  end
elseif ARGV[3] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[3], '*', 'e', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
end
redis.call('SET', KEYS[2], id, 'NX', 'PX', ARGV[2])
return {0, id}
`)

// Append validates req, queues it on its partition's batching writer and waits for its own
// result: the entry is acknowledged by Redis (and by MinReplicas replicas when configured)
// before Append returns. A duplicate (marker present) appends nothing and returns the
// original entry's id with Duplicate set.
//
// Invalid input is CodeInvalid and touches nothing: a source that is not a valid source
// name, a negative partition index, an empty event id, one longer than 256 bytes or with
// control characters, a negative window, retention or max length. A zero DedupeWindow means
// relay.DefaultDedupeWindow.
//
// The wait is bounded by MaxDelay + OpTimeout (+ ReplicaTimeout with MinReplicas). When ctx
// ends first, Append returns at once with an error wrapping ctx.Err() (CodeUnavailable); an
// append not yet sent is then dropped, one already sent may or may not have happened (a
// retry with the same event id is answered as a duplicate if it did).
func (s *Store) Append(ctx context.Context, req relay.AppendRequest) (relay.AppendResult, error) {
	if err := checkAppend(&req); err != nil {
		return relay.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return relay.AppendResult{}, relay.WrapError(relay.CodeUnavailable, err, "request canceled")
	}
	op := &appendOp{ctx: ctx, req: req, done: make(chan appendResult, 1)}
	if err := s.enqueue(op); err != nil {
		return relay.AppendResult{}, err
	}
	bound := time.NewTimer(s.appendBound())
	defer bound.Stop()
	select {
	case r := <-op.done:
		return r.res, r.err
	case <-ctx.Done():
		op.abandon()
		return relay.AppendResult{}, relay.WrapError(relay.CodeUnavailable, ctx.Err(), "request canceled")
	case <-bound.C:
		op.abandon()
		return relay.AppendResult{}, relay.WrapError(relay.CodeUnavailable,
			fmt.Errorf("redisstore: append: no answer within %s", s.appendBound()), "store unavailable")
	}
}

// appendBound is how long Append waits for its result at most, beyond which the round trip
// that carries it has itself timed out.
func (s *Store) appendBound() time.Duration {
	d := s.opts.MaxDelay + s.opts.OpTimeout + 100*time.Millisecond
	if s.opts.MinReplicas > 0 {
		d += s.opts.ReplicaTimeout
	}
	return d
}

func checkAppend(req *relay.AppendRequest) error {
	if err := checkPartition(req.Partition); err != nil {
		return err
	}
	if err := checkDedupeKey(req.DedupeKey); err != nil {
		return err
	}
	switch {
	case req.DedupeWindow < 0:
		return relay.Errorf(relay.CodeInvalid, "dedupe window must not be negative")
	case req.Retention < 0:
		return relay.Errorf(relay.CodeInvalid, "retention must not be negative")
	case req.MaxLen < 0:
		return relay.Errorf(relay.CodeInvalid, "max length must not be negative")
	}
	if req.DedupeWindow == 0 {
		req.DedupeWindow = relay.DefaultDedupeWindow
	}
	return nil
}

// Batching writer (group commit).
//
// Each partition with appends in progress has a writer: a queue and a count of round trips
// in flight. An append that finds its writer idle is sent at once, alone or with whatever is
// queued. While round trips are in flight, appends queue; the queue is sent as a further
// concurrent round trip (up to MaxInFlight) as soon as it holds MaxBatch entries or its oldest
// entry has waited MaxDelay, and otherwise when a round trip completes. Each round trip is
// one pipeline: one EVALSHA of appendScript per entry (dedupe stays atomic per entry), then
// WAIT when MinReplicas > 0. A writer with nothing queued or in flight is removed, so idle
// partitions cost nothing; no goroutine outlives its round trip.

type writer struct {
	p        relay.Partition
	queue    []*appendOp
	inflight int
	timer    *time.Timer // armed while the queue waits for MaxDelay
}

type appendOp struct {
	ctx      context.Context
	req      relay.AppendRequest
	enqueued time.Time
	state    atomic.Int32 // opQueued, opSent or opAbandoned
	done     chan appendResult
}

const (
	opQueued int32 = iota
	opSent
	opAbandoned
)

type appendResult struct {
	res relay.AppendResult
	err error
}

// abandon marks a queued op as given up by its caller, so that it is not sent; it has no
// effect on an op already sent.
func (op *appendOp) abandon() { op.state.CompareAndSwap(opQueued, opAbandoned) }

// finish delivers the op's result; the channel has room for the one result.
func (op *appendOp) finish(res relay.AppendResult, err error) {
	select {
	case op.done <- appendResult{res, err}:
	default:
	}
}

func (s *Store) enqueue(op *appendOp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return errClosed()
	}
	w := s.writers[op.req.Partition]
	if w == nil {
		w = &writer{p: op.req.Partition}
		s.writers[op.req.Partition] = w
	}
	op.enqueued = time.Now()
	w.queue = append(w.queue, op)
	s.maybeFlushLocked(w)
	return nil
}

// maybeFlushLocked starts the round trips w's queue is due for. s.mu must be held.
func (s *Store) maybeFlushLocked(w *writer) {
	for len(w.queue) > 0 && w.inflight < s.opts.MaxInFlight {
		if w.inflight > 0 && len(w.queue) < s.opts.MaxBatch {
			if wait := s.opts.MaxDelay - time.Since(w.queue[0].enqueued); wait > 0 {
				if w.timer == nil {
					w.timer = time.AfterFunc(wait, func() { s.onDelay(w) })
				}
				return
			}
		}
		n := min(len(w.queue), s.opts.MaxBatch)
		batch := make([]*appendOp, n)
		copy(batch, w.queue)
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
		w.inflight++
		s.flushWG.Add(1)
		go s.flush(w, batch)
	}
	if len(w.queue) == 0 && w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if len(w.queue) == 0 && w.inflight == 0 && s.writers[w.p] == w {
		delete(s.writers, w.p)
	}
}

func (s *Store) onDelay(w *writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.timer = nil
	if !s.closed.Load() {
		s.maybeFlushLocked(w)
	}
}

// flush sends one batch and then starts whatever the writer's queue is due for.
func (s *Store) flush(w *writer, batch []*appendOp) {
	defer s.flushWG.Done()
	ops := batch[:0]
	for _, op := range batch {
		if !op.state.CompareAndSwap(opQueued, opSent) {
			continue // abandoned by its caller
		}
		if err := op.ctx.Err(); err != nil {
			op.finish(relay.AppendResult{}, relay.WrapError(relay.CodeUnavailable, err, "request canceled"))
			continue
		}
		ops = append(ops, op)
	}
	if len(ops) > 0 {
		if fn := s.onBatch.Load(); fn != nil {
			(*fn)(w.p, len(ops))
		}
		s.send(w.p, ops)
	}
	s.mu.Lock()
	w.inflight--
	if s.closed.Load() {
		if w.inflight == 0 && s.writers[w.p] == w {
			delete(s.writers, w.p)
		}
	} else {
		s.maybeFlushLocked(w)
	}
	s.mu.Unlock()
}

// send runs one round trip for ops (all of partition p) and delivers each op's result.
func (s *Store) send(p relay.Partition, ops []*appendOp) {
	timeout := s.opts.OpTimeout
	if s.opts.MinReplicas > 0 {
		timeout += s.opts.ReplicaTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	keys := make([][]string, len(ops))
	args := make([][]any, len(ops))
	nowMs := time.Now().UnixMilli()
	stream := StreamKey(p)
	for i, op := range ops {
		keys[i] = []string{stream, DedupeKey(p, op.req.DedupeKey)}
		args[i] = appendArgs(op.req, nowMs)
	}

	cmds := make([]*redis.Cmd, len(ops))
	waitErr := s.runAppend(ctx, p, func(pipe redis.Pipeliner) {
		for i := range ops {
			cmds[i] = appendScript.EvalSha(ctx, pipe, keys[i], args[i]...)
		}
	})
	// NOSCRIPT: the server does not have the script cached (first use, restart, failover).
	// Those entries were not executed: send them again with EVAL, which also caches it.
	var retry []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	retryWaitErr := waitErr
	if len(retry) > 0 {
		retryWaitErr = s.runAppend(ctx, p, func(pipe redis.Pipeliner) {
			for _, i := range retry {
				cmds[i] = appendScript.Eval(ctx, pipe, keys[i], args[i]...)
			}
		})
	}
	retried := make(map[int]bool, len(retry))
	for _, i := range retry {
		retried[i] = true
	}

	for i, op := range ops {
		res, err := appendReply(cmds[i])
		if err == nil {
			werr := waitErr
			if retried[i] {
				werr = retryWaitErr
			}
			err = werr
		}
		if err != nil {
			op.finish(relay.AppendResult{}, relay.WrapError(relay.CodeUnavailable,
				fmt.Errorf("redisstore: append to %s: %w", p, err), "store unavailable"))
			continue
		}
		op.finish(res, nil)
	}
}

// runAppend executes one pipeline built by fill, followed by WAIT when MinReplicas > 0, and
// returns the WAIT failure (nil without WAIT). Per-command errors stay on the commands.
//
// WAIT counts the replicas that acknowledged the writes of its own connection, so it must
// share the pipeline's connection: with a cluster client, the pipeline then runs on the
// partition's master node client directly (a MOVED reply during resharding fails the
// batch with CodeUnavailable; the client retries).
func (s *Store) runAppend(ctx context.Context, p relay.Partition, fill func(redis.Pipeliner)) error {
	var pipe redis.Pipeliner
	if s.cluster != nil && s.opts.MinReplicas > 0 {
		node, err := s.cluster.MasterForKey(ctx, StreamKey(p))
		if err != nil {
			pipe = s.client.Pipeline()
			fill(pipe)
			for _, c := range pipe.Cmds() {
				c.SetErr(err)
			}
			return err
		}
		pipe = node.Pipeline()
	} else {
		pipe = s.client.Pipeline()
	}
	fill(pipe)
	var wait *redis.Cmd
	if s.opts.MinReplicas > 0 {
		wait = pipe.Do(ctx, "wait", s.opts.MinReplicas, s.opts.ReplicaTimeout.Milliseconds())
	}
	_, _ = pipe.Exec(ctx)
	if wait == nil {
		return nil
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(s.opts.MinReplicas) {
		return fmt.Errorf("WAIT: %d of %d replicas acknowledged within %s", n, s.opts.MinReplicas, s.opts.ReplicaTimeout)
	}
	return nil
}

func appendArgs(req relay.AppendRequest, nowMs int64) []any {
	window := req.DedupeWindow.Milliseconds()
	if window < 1 {
		window = 1
	}
	minID := ""
	if req.Retention > 0 {
		if t := nowMs - req.Retention.Milliseconds(); t > 0 {
			minID = strconv.FormatInt(t, 10)
		}
	}
	maxLen := ""
	if req.MaxLen > 0 {
		maxLen = strconv.FormatInt(req.MaxLen, 10)
	}
	return []any{req.Event, window, minID, maxLen}
}

// appendReply parses appendScript's {duplicate, id} reply.
func appendReply(c *redis.Cmd) (relay.AppendResult, error) {
	if c == nil {
		return relay.AppendResult{}, fmt.Errorf("not sent")
	}
	v, err := c.Slice()
	if err != nil {
		return relay.AppendResult{}, err
	}
	if len(v) != 2 {
		return relay.AppendResult{}, fmt.Errorf("unexpected script reply %v", v)
	}
	idStr, ok := v[1].(string)
	if !ok {
		return relay.AppendResult{}, fmt.Errorf("unexpected script reply %v", v)
	}
	id, err := parseID(idStr)
	if err != nil {
		return relay.AppendResult{}, err
	}
	return relay.AppendResult{ID: id, Duplicate: toInt(v[0]) == 1}, nil
}
