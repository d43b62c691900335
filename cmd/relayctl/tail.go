package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
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
		t                           = &tailer{env: e}
		sources, types              stringList
		fromStart, deadLetters      bool
		since, after                string
		ackDeadline, heartbeat      time.Duration
		maxOutstanding, maxAttempts int
	)
	req := &eventrelayv1.SubscribeRequest{}
	fs.Var(&sources, "source", "source `name` to read (repeatable; default: every source the token may read)")
	fs.Var(&types, "type", "event type `glob`, e.g. 'invoice.*' (repeatable; default: every type)")
	fs.StringVar(&req.Filter, "filter", "", "deliver only events matching this CEL `expression` over event and data, e.g. 'event.type.startsWith(\"invoice.\") && data.data.object.amount_due > 100000' (a group setting with --group)")
	fs.BoolVar(&fromStart, "from-start", false, "replay everything retained, then follow")
	fs.StringVar(&since, "since", "", "replay from a `time`: a duration ago (30m, 1h, 2d) or RFC 3339 (2026-01-02T15:04:05Z)")
	fs.StringVar(&after, "after", "", "resume exactly after this `cursor`")
	fs.StringVar(&req.Group, "group", "", "consume as a member of this durable consumer `group`, acknowledging each event; the group's --type, --ack-deadline and --max-attempts are recorded by its first member, later members omit them or must give the same (else FAILED_PRECONDITION)")
	fs.StringVar(&req.Consumer, "consumer", "", "member `name` within the group (default relayctl-<host>-<pid>)")
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
		if deadLetters && req.Group == "" {
			return usagef("--dead-letters needs --group: dead letters belong to a consumer group")
		}
		if deadLetters && (req.Consumer != "" || ackDeadline != 0 || maxOutstanding != 0 || maxAttempts != 0) {
			return usagef("--dead-letters reads the group's dead letters as a tail: --consumer, --ack-deadline, --max-outstanding and --max-attempts do not apply")
		}
		if req.Group != "" && !deadLetters && (after != "" || t.cursorFile != "") {
			return usagef("a consumer group keeps its own position: --after and --cursor-file are for tails without --group")
		}
		if req.Consumer != "" && req.Group == "" {
			return usagef("--consumer needs --group")
		}
		if t.count < 0 || maxOutstanding < 0 || maxAttempts < 0 {
			return usagef("--count, --max-outstanding and --max-attempts must not be negative")
		}
		req.Sources, req.Types, req.DeadLetters = sources, types, deadLetters
		if fromStart {
			req.Start = eventrelayv1.StartPosition_START_POSITION_EARLIEST
		}
		if since != "" {
			ts, err := parseTime(since, e.now())
			if err != nil {
				return usagef("--since: %v", err)
			}
			req.Since = timestamppb.New(ts)
		}
		if heartbeat > 0 {
			req.HeartbeatInterval = durationpb.New(heartbeat)
		}
		if req.Group != "" && !deadLetters {
			if req.Consumer == "" {
				req.Consumer = defaultConsumer()
			}
			if ackDeadline > 0 {
				req.AckDeadline = durationpb.New(ackDeadline)
			}
			req.MaxDeliveryAttempts = int32(maxAttempts)
			req.MaxOutstanding = int32(maxOutstanding)
			if maxOutstanding == 0 && t.count > 0 && t.count <= 1000 {
				req.MaxOutstanding = int32(t.count) // do not take events this run will not print
			}
		}
		t.cursor = after
		if t.cursorFile != "" && t.cursor == "" {
			b, err := os.ReadFile(t.cursorFile)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--cursor-file: %w", err)
			}
			t.cursor = strings.TrimSpace(string(b))
			t.saved = t.cursor
		}
		client, closeConn, err := g.dial()
		if err != nil {
			return err
		}
		defer closeConn()
		t.client, t.req = client, req
		return t.run(ctx)
	}
}

// tailer is one tail or group consumption, across reconnections.
type tailer struct {
	env        *env
	client     eventrelayv1.EventServiceClient
	req        *eventrelayv1.SubscribeRequest
	format     string
	cursorFile string
	count      int

	cursor  string // the last cursor printed (or of a heartbeat)
	saved   string // the cursor last written to cursorFile
	printed int
}

// errDone ends a tail that printed --count events.
var errDone = errors.New("done")

// errEnded is a stream the server closed without an error.
var errEnded = status.Error(codes.Unavailable, "the stream ended")

// run subscribes, and resubscribes after the last cursor while the stream drops for a reason
// that resuming fixes. It returns nil when ctx ends or --count events were printed.
func (t *tailer) run(ctx context.Context) error {
	established := false
	var started time.Time
	failures := 0
	for {
		req := proto.Clone(t.req).(*eventrelayv1.SubscribeRequest)
		if req.Group == "" {
			switch {
			case t.cursor != "":
				req.AfterCursor, req.Start, req.Since = t.cursor, eventrelayv1.StartPosition_START_POSITION_UNSPECIFIED, nil
			case established && req.Since == nil && req.Start != eventrelayv1.StartPosition_START_POSITION_EARLIEST:
				// Dropped before the first message of a tail from now: resume from when it began.
				req.Since = timestamppb.New(started)
			}
		}
		if !established {
			started = t.env.now()
		}
		got, err := t.stream(ctx, req, &established)
		if errors.Is(err, errDone) || ctx.Err() != nil {
			return nil
		}
		if !established || !retryable(err) {
			return err
		}
		if got {
			failures = 0
		}
		delay := backoff(failures)
		failures++
		fmt.Fprintf(t.env.stderr, "relayctl tail: stream interrupted: %s; resuming in %s\n", errorMessage(err), delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// stream runs one subscription until it fails; got reports whether any message came.
func (t *tailer) stream(ctx context.Context, req *eventrelayv1.SubscribeRequest, established *bool) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := t.client.Subscribe(ctx, req)
	if err != nil {
		return false, err
	}
	if _, err := s.Header(); err != nil { // relayd sends headers as soon as the stream is set up
		return false, err
	}
	*established = true
	for {
		msg, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return got, errEnded
		}
		if err != nil {
			return got, err
		}
		got = true
		if hb := msg.GetHeartbeat(); hb != nil {
			if err := t.advance(hb.GetCursor()); err != nil {
				return got, err
			}
			continue
		}
		d := msg.GetDelivery()
		if d == nil {
			continue
		}
		if err := writeDelivery(t.env.stdout, t.format, d); err != nil {
			return got, fmt.Errorf("writing output: %w", err)
		}
		if d.GetAckId() != "" {
			t.ack(ctx, d)
		}
		if err := t.advance(d.GetCursor()); err != nil {
			return got, err
		}
		t.printed++
		if t.count > 0 && t.printed >= t.count {
			return got, errDone
		}
	}
}

// ack acknowledges a group delivery after it was printed. A failed ack is reported, not
// fatal: the event is redelivered after the ack deadline.
func (t *tailer) ack(ctx context.Context, d *eventrelayv1.Delivery) {
	resp, err := t.client.Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{d.GetAckId()}})
	switch {
	case err != nil:
		fmt.Fprintf(t.env.stderr, "relayctl tail: acknowledging event %s: %s (it will be redelivered)\n", d.GetEvent().GetId(), errorMessage(err))
	case len(resp.GetUnknownAckIds()) > 0:
		fmt.Fprintf(t.env.stderr, "relayctl tail: event %s: the ack deadline passed before it was acknowledged (it will be redelivered)\n", d.GetEvent().GetId())
	}
}

// advance records the cursor of a message and persists it to --cursor-file.
func (t *tailer) advance(cursor string) error {
	if cursor == "" || t.req.Group != "" {
		return nil
	}
	t.cursor = cursor
	if t.cursorFile == "" || cursor == t.saved {
		return nil
	}
	if err := writeFileAtomic(t.cursorFile, []byte(cursor+"\n")); err != nil {
		return fmt.Errorf("--cursor-file: %w", err)
	}
	t.saved = cursor
	return nil
}

// retryable reports whether resuming from the cursor fixes a stream error: the relay went
// away or restarted (UNAVAILABLE, or a stream that just ended), or ended a reader that fell
// behind (RESOURCE_EXHAUSTED).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// backoff is the delay before the n-th consecutive reconnection: 250ms doubling to 10s, with
// jitter.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n, 6)
	d = min(d, 10*time.Second)
	return d/2 + rand.N(d/2+1)
}

// writeFileAtomic replaces path with data: a reader sees the old or the new content, never a
// mix, and a crash leaves one of them.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
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
