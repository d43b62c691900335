package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
)

var tailCommand = &command{
	name:     "tail",
	synopsis: "[--source S]... [--type GLOB]... [--from-start | --since 1h|TIME | --after CURSOR] [--group G [--consumer C]] [-o text|json|cloudevents] [--cursor-file F] [--count N]",
	summary:  "print events as they arrive: tail, replay, resume, or consume as a group",
	doc: `
Subscribes to relayd's EventService and prints every event as it arrives, by default only
events appended from now on, of every source the token may read. --from-start replays
everything retained first, --since from a time (a duration ago such as 1h or 2d, or an RFC 3339
time), --after resumes exactly after a cursor.

Output (-o): text, one line per event: "time source type id"; json, the Delivery as protojson
(event, cursor, and in group mode ack_id and delivery_attempt), one per line; cloudevents, the
event as a CloudEvents 1.0 structured-mode JSON object, one per line (data inline when the
content type is JSON, data_base64 otherwise).

With --group, relayctl consumes as a member (--consumer, default relayctl-<host>-<pid>) of a
durable consumer group: the group remembers its position, each event goes to one member of
the group, and relayctl acknowledges each event after printing it. A new group starts at the
end of the stream unless --from-start or --since is given.

When the stream drops (relayd restarts, UNAVAILABLE, or RESOURCE_EXHAUSTED for a reader that
fell behind), relayctl reconnects with backoff and resumes after the last cursor it printed
(a group resumes from its own position), so nothing is missed or printed twice. --cursor-file
keeps that cursor in a file, rewritten atomically after every message, and resumes from it at
start: run the same command again to continue where the last run stopped.

--dead-letters --group G prints the dead letters of group G (dead letters belong to a group)
as a tail: nothing is acknowledged, and --consumer, --ack-deadline, --max-outstanding and
--max-attempts do not apply; --after and --cursor-file resume as for a tail.

--count N exits after N events. Interrupt (Ctrl-C) to stop.`,
	setup: setupTail,
}

func setupTail(fs *flag.FlagSet, e *env) runner {
	g := addGRPCFlags(fs, e)
	var (
		t                           = &tailer{}
		sources, types              stringList
		fromStart, deadLetters      bool
		since, after                string
		ackDeadline, heartbeat      time.Duration
		maxOutstanding, maxAttempts int
	)
	var filter, group, consumer string
	fs.Var(&sources, "source", "source `name` to read (repeatable; default: every source the token may read)")
	fs.Var(&types, "type", "event type `glob`, e.g. 'invoice.*' (repeatable; default: every type)")
	fs.StringVar(&filter, "filter", "", "deliver only events matching this CEL `expression` over event and data, e.g. 'event.type.startsWith(\"invoice.\") && data.data.object.amount_due > 100000' (a group setting with --group)")
	fs.BoolVar(&fromStart, "from-start", false, "replay everything retained, then follow")
	fs.StringVar(&since, "since", "", "replay from a `time`: a duration ago (30m, 1h, 2d) or RFC 3339 (2026-01-02T15:04:05Z)")
	fs.StringVar(&after, "after", "", "resume exactly after this `cursor`")
	fs.StringVar(&group, "group", "", "consume as a member of this durable consumer `group`, acknowledging each event; the group's --type, --ack-deadline and --max-attempts are recorded by its first member, later members omit them or must give the same (else FAILED_PRECONDITION)")
	fs.StringVar(&consumer, "consumer", "", "member `name` within the group (default relayctl-<host>-<pid>)")
	fs.DurationVar(&ackDeadline, "ack-deadline", 0, "group: redeliver an event not acknowledged within this time (default: the group's; 30s for a new group)")
	fs.IntVar(&maxOutstanding, "max-outstanding", 0, "group: unacknowledged events in flight (default --count when set, else relayd's 1000)")
	fs.IntVar(&maxAttempts, "max-attempts", 0, "group: deliveries before an event moves to the dead letters (default: the group's; 10 for a new group)")
	fs.BoolVar(&deadLetters, "dead-letters", false, "read the dead letters of --group (required) on the sources instead of their streams, as a tail")
	fs.DurationVar(&heartbeat, "heartbeat", 0, "heartbeat interval of a quiet stream (relayd's default 15s)")
	fs.StringVar(&t.format, "o", formatText, "output `format`: text, json or cloudevents")
	fs.StringVar(&t.format, "output", formatText, "same as -o")
	fs.StringVar(&t.cursorFile, "cursor-file", "", "resume from the cursor in this `file` and keep it up to date")
	fs.IntVar(&t.count, "count", 0, "exit after this many events (0: never)")

	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if err := checkFormat(t.format, formatText, formatJSON, formatCloudEvents); err != nil {
			return err
		}
		starts := 0
		for _, set := range []bool{fromStart, since != "", after != ""} {
			if set {
				starts++
			}
		}
		if starts > 1 {
			return usagef("--from-start, --since and --after exclude each other")
		}
		if deadLetters && group == "" {
			return usagef("--dead-letters needs --group: dead letters belong to a consumer group")
		}
		if deadLetters && (consumer != "" || ackDeadline != 0 || maxOutstanding != 0 || maxAttempts != 0) {
			return usagef("--dead-letters reads the group's dead letters as a tail: --consumer, --ack-deadline, --max-outstanding and --max-attempts do not apply")
		}
		if group != "" && !deadLetters && (after != "" || t.cursorFile != "") {
			return usagef("a consumer group keeps its own position: --after and --cursor-file are for tails without --group")
		}
		if consumer != "" && group == "" {
			return usagef("--consumer needs --group")
		}
		if t.count < 0 || maxOutstanding < 0 || maxAttempts < 0 {
			return usagef("--count, --max-outstanding and --max-attempts must not be negative")
		}
		sub := client.Subscription{Sources: sources, Types: types, Filter: filter, After: after,
			Group: group, DeadLetters: deadLetters, Heartbeat: heartbeat, FailFast: true,
			OnResume: func(err error, in time.Duration) {
				fmt.Fprintf(e.stderr, "relayctl tail: stream interrupted: %s; resuming in %s\n", errorMessage(err), in.Round(time.Millisecond))
			}}
		if fromStart {
			sub.Start = client.StartEarliest
		}
		if since != "" {
			ts, err := parseTime(since, e.now())
			if err != nil {
				return usagef("--since: %v", err)
			}
			sub.Since = ts
		}
		if t.cursorFile != "" {
			sub.CursorStore = client.FileCursorStore{Path: t.cursorFile}
		}
		if group != "" && !deadLetters {
			sub.Consumer, sub.AckDeadline, sub.MaxAttempts, sub.MaxOutstanding = consumer, ackDeadline, maxAttempts, maxOutstanding
			if sub.Consumer == "" {
				sub.Consumer = defaultConsumer()
			}
			if maxOutstanding == 0 && t.count > 0 && t.count <= 1000 {
				sub.MaxOutstanding = t.count // do not take events this run will not print
			}
		}
		c, err := g.client()
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		printed := 0
		var werr error
		err = c.Receive(ctx, sub, func(_ context.Context, m *client.Message) error {
			d := &eventrelayv1.Delivery{Event: m.Event, Cursor: m.Cursor, AckId: m.AckID, DeliveryAttempt: int32(m.Attempt)}
			if err := writeDelivery(e.stdout, t.format, d); err != nil {
				werr = fmt.Errorf("writing output: %w", err)
				cancel()
				return werr
			}
			if printed++; t.count > 0 && printed >= t.count {
				cancel()
			}
			return nil // acknowledged in group mode
		})
		if werr != nil {
			return werr
		}
		var he *client.HandlerError
		if errors.As(err, &he) {
			return he.Err
		}
		return err
	}
}

// tailer holds tail's output settings.
type tailer struct {
	format     string
	cursorFile string
	count      int
}

var notConsumerChar = regexp.MustCompile(`[^A-Za-z0-9._:-]+`)

// defaultConsumer names this process within a group: relayctl-<host>-<pid>. It is stable
// across reconnections, so the member first gets back its own unacknowledged events.
func defaultConsumer() string {
	host, _ := os.Hostname()
	host = strings.Trim(notConsumerChar.ReplaceAllString(host, "-"), "-")
	name := "relayctl-" + host + "-" + strconv.Itoa(os.Getpid())
	if host == "" {
		name = "relayctl-" + strconv.Itoa(os.Getpid())
	}
	return name[:min(len(name), 128)]
}

// parseTime parses a time as a duration before now (30m, 1h, 2d), an RFC 3339 time, a date
// (2006-01-02, UTC) or unix seconds.
func parseTime(s string, now time.Time) (time.Time, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration ago must not be negative", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Time{}, fmt.Errorf("%q: want a duration ago (30m, 1h, 2d), an RFC 3339 time or a date", s)
}
