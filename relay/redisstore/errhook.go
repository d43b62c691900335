package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ObserveErrors makes the store's client call fn for every failed Redis command (an
// error-count metric): network errors, timeouts and error replies, with the lower-case
// command name ("other" for a command the store does not use, "dial" for a failed
// connection). Not failures: a nil reply, NOSCRIPT (the script is then loaded and
// retried), a canceled caller, connection set-up that go-redis tolerates. fn runs on the
// caller's goroutine: keep it cheap. Call it once, before the store is used.
func (s *Store) ObserveErrors(fn func(command string)) {
	s.client.AddHook(errorHook{fn})
}

type errorHook struct{ fn func(string) }

func (h errorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			h.fn("dial")
		}
		return c, err
	}
}

func (h errorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.observe(ctx, cmd, err)
		return err
	}
}

func (h errorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.observe(ctx, c, c.Err())
		}
		return err
	}
}

// observedCommands bounds the command names reported: anything else is "other".
var observedCommands = map[string]bool{
	"dial": true, "ping": true, "evalsha": true, "eval": true, "xadd": true, "xrange": true, "xrevrange": true,
	"xread": true, "xreadgroup": true, "xautoclaim": true, "xack": true, "xgroup": true, "xinfo": true,
	"xlen": true, "xpending": true, "xclaim": true, "get": true, "set": true, "wait": true, "multi": true,
	"exec": true, "hsetnx": true, "hget": true, "hgetall": true, "exists": true, "script": true,
}

// observe reports err, the outcome of cmd (the error a command returns is not yet on the
// command when a hook sees it).
func (h errorHook) observe(ctx context.Context, cmd redis.Cmder, err error) {
	if err == nil {
		err = cmd.Err()
	}
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOSCRIPT") ||
		errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	name := strings.ToLower(cmd.Name())
	if name == "client" || name == "hello" {
		return // CLIENT SETINFO before Redis 7.2
	}
	if !observedCommands[name] {
		name = "other"
	}
	h.fn(name)
}
