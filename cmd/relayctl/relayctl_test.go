package main

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// flakyServer is an EventService whose Subscribe streams drop, to test tail's resumption:
// each call serves the next script entry, then fails with its error (or waits for the client).
type flakyServer struct {
	eventrelayv1.UnimplementedEventServiceServer
	script []flakyCall

	mu    sync.Mutex
	calls []*eventrelayv1.SubscribeRequest
	auth  []string
}

type flakyCall struct {
	send []*eventrelayv1.SubscribeResponse
	err  error // nil: keep the stream open until the client leaves
}

func (s *flakyServer) Subscribe(req *eventrelayv1.SubscribeRequest, stream eventrelayv1.EventService_SubscribeServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.mu.Lock()
	n := len(s.calls)
	s.calls = append(s.calls, req)
	s.auth = append(s.auth, md.Get("authorization")...)
	s.mu.Unlock()
	if n >= len(s.script) {
		return status.Error(codes.Internal, "unexpected call")
	}
	_ = stream.SendHeader(metadata.MD{})
	for _, m := range s.script[n].send {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	if s.script[n].err != nil {
		return s.script[n].err
	}
	<-stream.Context().Done()
	return nil
}

func delivery(id, cursor string) *eventrelayv1.SubscribeResponse {
	return &eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Delivery{Delivery: &eventrelayv1.Delivery{
		Cursor: cursor,
		Event:  &eventrelayv1.Event{Id: id, Source: "orders", Type: "order.created", Time: timestamppb.New(time.Unix(1700000000, 0))},
	}}}
}

func heartbeat(cursor string) *eventrelayv1.SubscribeResponse {
	return &eventrelayv1.SubscribeResponse{Kind: &eventrelayv1.SubscribeResponse_Heartbeat{Heartbeat: &eventrelayv1.Heartbeat{Cursor: cursor}}}
}

func serve(t *testing.T, srv eventrelayv1.EventServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	eventrelayv1.RegisterEventServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// TestTailResumes drops the stream twice (UNAVAILABLE after a delivery, RESOURCE_EXHAUSTED
// after a heartbeat): tail resumes after the last cursor each time, prints every event once,
// keeps the cursor file current and sends the token from RELAY_TOKEN.
func TestTailResumes(t *testing.T) {
	srv := &flakyServer{script: []flakyCall{
		{send: []*eventrelayv1.SubscribeResponse{delivery("a", "c1")}, err: status.Error(codes.Unavailable, "relay is shutting down")},
		{send: []*eventrelayv1.SubscribeResponse{heartbeat("c1h")}, err: status.Error(codes.ResourceExhausted, "subscriber fell behind")},
		{send: []*eventrelayv1.SubscribeResponse{delivery("b", "c2")}},
	}}
	addr := serve(t, srv)
	file := filepath.Join(t.TempDir(), "cursor")
	res := relayctl(t, []string{"RELAY_TOKEN=tok"}, "tail", "--addr", addr, "--from-start", "--count", "2", "--cursor-file", file).ok(t)
	if got := ids(t, res); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("printed %v, want [a b]", got)
	}
	if n := strings.Count(res.stderr, "resuming in"); n != 2 {
		t.Errorf("stderr reports %d resumptions, want 2:\n%s", n, res.stderr)
	}
	var after []string
	for _, c := range srv.calls {
		after = append(after, c.GetAfterCursor())
	}
	if !slices.Equal(after, []string{"", "c1", "c1h"}) {
		t.Errorf("after_cursor of the calls %q, want [\"\" c1 c1h]", after)
	}
	if srv.calls[0].GetStart() != eventrelayv1.StartPosition_START_POSITION_EARLIEST || srv.calls[1].GetStart() != eventrelayv1.StartPosition_START_POSITION_UNSPECIFIED {
		t.Errorf("start of the calls: %v, %v", srv.calls[0].GetStart(), srv.calls[1].GetStart())
	}
	if !slices.Equal(srv.auth, []string{"Bearer tok", "Bearer tok", "Bearer tok"}) {
		t.Errorf("authorization %q", srv.auth)
	}
	if b, _ := os.ReadFile(file); string(b) != "c2\n" {
		t.Errorf("cursor file %q, want c2", b)
	}
}

// TestTailStops checks the errors tail does not retry: they end it with status 1 and the
// server's message.
func TestTailStops(t *testing.T) {
	srv := &flakyServer{script: []flakyCall{{err: status.Error(codes.OutOfRange, "cursor older than the retained history; oldest available: 1-0")}}}
	addr := serve(t, srv)
	res := relayctl(t, nil, "tail", "--addr", addr, "--after", "old")
	if res.code != 1 || res.stderr != "relayctl tail: cursor older than the retained history; oldest available: 1-0 (OutOfRange)\n" {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
	// Nothing listens: the first connection fails at once instead of retrying.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	res = relayctl(t, nil, "tail", "--addr", closed)
	if res.code != 1 || !strings.Contains(res.stderr, "(Unavailable)") || strings.Contains(res.stderr, "goroutine") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestUsage checks --help on every command (status 0, on stdout) and usage errors (status 2).
func TestUsage(t *testing.T) {
	for _, c := range commands {
		args := append(strings.Fields(c.name), "--help")
		res := relayctl(t, nil, args...)
		if res.code != 0 || !strings.HasPrefix(res.stdout, "Usage:\n  relayctl "+c.name) || res.stderr != "" {
			t.Errorf("%v: exit %d\n%s%s", args, res.code, res.stdout, res.stderr)
		}
		if help := relayctl(t, nil, append([]string{"help"}, strings.Fields(c.name)...)...); help.stdout != res.stdout {
			t.Errorf("relayctl help %s differs from --help", c.name)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr (or stdout for status 0)
	}{
		{nil, 2, "Commands:"},
		{[]string{"help"}, 0, "tail"},
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"events", "--help"}, 0, "list"},
		{[]string{"events"}, 2, "a subcommand is needed"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"events", "nope"}, 2, `unknown command "events nope"`},
		{[]string{"tail", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"tail", "--from-start", "--since", "1h"}, 2, "exclude each other"},
		{[]string{"tail", "--group", "g", "--cursor-file", "f"}, 2, "keeps its own position"},
		{[]string{"tail", "--consumer", "c"}, 2, "--consumer needs --group"},
		{[]string{"tail", "-o", "yaml"}, 2, `-o "yaml"`},
		{[]string{"tail", "--since", "yesterday"}, 2, "--since"},
		{[]string{"tail", "--count", "x"}, 2, "invalid value"},
		{[]string{"send", "--data", "{}"}, 2, "--source is required"},
		{[]string{"send", "--source", "s", "--data", "{}"}, 2, "--secret is required"},
		{[]string{"send", "--source", "s", "--secret", "x"}, 2, "a payload is needed"},
		{[]string{"send", "--source", "s", "--secret", "env:NOT_SET", "--data", "{}"}, 2, "NOT_SET is not set"},
		{[]string{"send", "--source", "s", "--provider", "nope", "--secret", "x", "--data", "{}"}, 2, `unknown "nope"`},
		{[]string{"send", "--source", "s", "--provider", "stripe", "--header-name", "X", "--secret", "x", "--data", "{}"}, 2, `header: not used by provider "stripe"`},
		{[]string{"send", "--source", "Bad Name", "--secret", "x", "--data", "{}"}, 2, "must match"},
		{[]string{"send", "--source", "s", "--secret", "x", "--header", "novalue", "--data", "{}"}, 2, "want NAME=VALUE"},
		{[]string{"send", "--url", "ftp://x", "--source", "s", "--secret", "x", "--data", "{}"}, 2, "--url"},
		{[]string{"events", "get", "--source", "s"}, 2, "one event ID is needed"},
		{[]string{"events", "list"}, 2, "--source is required"},
		{[]string{"dlq", "redrive", "--source", "s", "e-1"}, 2, "event ids go in --id"},
		{[]string{"dlq", "redrive", "--source", "s"}, 2, "--group is required"},
		{[]string{"dlq", "list", "--source", "s"}, 2, "--group is required"},
		{[]string{"tail", "--dead-letters"}, 2, "--dead-letters needs --group"},
		{[]string{"tail", "--dead-letters", "--group", "g", "--consumer", "c"}, 2, "do not apply"},
		{[]string{"sources", "-o", "cloudevents"}, 2, `-o "cloudevents"`},
		{[]string{"tail", "--ca", "/nonexistent"}, 2, "--ca"},
	} {
		res := relayctl(t, nil, tc.args...)
		out := res.stderr
		if tc.code == 0 {
			out = res.stdout
		}
		if res.code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d (want %d), output lacks %q:\nstdout: %s\nstderr: %s", tc.args, res.code, tc.code, tc.want, res.stdout, res.stderr)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		pos        []string
		source     string
		fromStart  bool
		wantErrMsg string
	}{
		{args: []string{"--source", "s", "ID"}, pos: []string{"ID"}, source: "s"},
		{args: []string{"ID", "--source", "s", "--from-start"}, pos: []string{"ID"}, source: "s", fromStart: true},
		{args: []string{"-", "--source=s"}, pos: []string{"-"}, source: "s"},
		{args: []string{"--source", "s", "--", "--from-start"}, pos: []string{"--from-start"}, source: "s"},
		{args: []string{"a", "b"}, pos: []string{"a", "b"}},
		{args: []string{"a", "--bad"}, wantErrMsg: "not defined"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(nopWriter{})
		source := fs.String("source", "", "")
		fromStart := fs.Bool("from-start", false, "")
		pos, err := parseArgs(fs, tc.args)
		if tc.wantErrMsg != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrMsg) || !isFlagError(err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.wantErrMsg)
			}
			continue
		}
		if err != nil || !slices.Equal(pos, tc.pos) || *source != tc.source || *fromStart != tc.fromStart {
			t.Errorf("%q: pos %q source %q from-start %v err %v", tc.args, pos, *source, *fromStart, err)
		}
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "1h", want: now.Add(-time.Hour)},
		{in: "90s", want: now.Add(-90 * time.Second)},
		{in: "2d", want: now.Add(-48 * time.Hour)},
		{in: "2026-03-01T10:00:00Z", want: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{in: "2026-03-01T10:00:00.5+01:00", want: time.Date(2026, 3, 1, 9, 0, 0, 5e8, time.UTC)},
		{in: "2026-03-01", want: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{in: "1700000000", want: time.Unix(1700000000, 0)},
		{in: "-1h", err: true},
		{in: "yesterday", err: true},
		{in: "", err: true},
	} {
		got, err := parseTime(tc.in, now)
		if (err != nil) != tc.err || !got.Equal(tc.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestCloudEvent checks the CloudEvents mapping attribute by attribute (docs/api.md "CloudEvents
// mapping").
func TestCloudEvent(t *testing.T) {
	ts := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC))
	rt := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC))
	for _, tc := range []struct {
		name string
		ev   *eventrelayv1.Event
		want string
	}{{
		name: "json data inline, extensions",
		ev: &eventrelayv1.Event{Id: "evt_1", Source: "stripe", Type: "invoice.paid", Subject: "in_1", Time: ts, ReceivedTime: rt,
			DataContentType: "application/json; charset=utf-8", Data: []byte("{\n  \"a\": \"<b>\"\n}"), PartitionKey: "cus_1",
			TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Headers: map[string]string{"x": "y"}},
		want: `{"specversion":"1.0","id":"evt_1","source":"stripe","type":"invoice.paid","subject":"in_1","time":"2026-01-02T03:04:05.006Z",` +
			`"datacontenttype":"application/json; charset=utf-8","data":{"a":"<b>"},"receivedtime":"2026-01-02T03:04:06Z","partitionkey":"cus_1",` +
			`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}` + "\n",
	}, {
		name: "form data base64, no type",
		ev:   &eventrelayv1.Event{Id: "x", Source: "twilio", Time: ts, DataContentType: "application/x-www-form-urlencoded", Data: []byte("a=1&b=2")},
		want: `{"specversion":"1.0","id":"x","source":"twilio","type":"eventrelay.untyped","time":"2026-01-02T03:04:05.006Z",` +
			`"datacontenttype":"application/x-www-form-urlencoded","data_base64":"YT0xJmI9Mg=="}` + "\n",
	}, {
		name: "invalid JSON under a JSON type is base64",
		ev:   &eventrelayv1.Event{Id: "y", Source: "s", Type: "t", DataContentType: "application/vnd.api+json", Data: []byte("{oops")},
		want: `{"specversion":"1.0","id":"y","source":"s","type":"t","datacontenttype":"application/vnd.api+json","data_base64":"e29vcHM="}` + "\n",
	}, {
		name: "no data",
		ev:   &eventrelayv1.Event{Id: "z", Source: "s", Type: "t"},
		want: `{"specversion":"1.0","id":"z","source":"s","type":"t"}` + "\n",
	}} {
		got, err := client.MarshalCloudEvent(tc.ev)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s (%v)", tc.name, got, tc.want, err)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not JSON", tc.name)
		}
	}
}

func TestTextLine(t *testing.T) {
	var b strings.Builder
	ev := &eventrelayv1.Event{Id: "gl-1", Source: "gitlab", Type: "Push Hook", Time: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	if err := writeEvent(&b, formatText, ev); err != nil {
		t.Fatal(err)
	}
	ev = &eventrelayv1.Event{Id: "x"}
	if err := writeEvent(&b, formatText, ev); err != nil {
		t.Fatal(err)
	}
	if want := "2026-01-02T03:04:05.000Z gitlab \"Push Hook\" gl-1\n- - - x\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestDefaultConsumer(t *testing.T) {
	if c := defaultConsumer(); !strings.HasPrefix(c, "relayctl-") || notConsumerChar.MatchString(c) || len(c) > 128 {
		t.Errorf("defaultConsumer() = %q", c)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "a b": "'a b'", "it's": `'it'\''s'`, `$x "y"`: `'$x "y"'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
