package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/eventrelay/eventrelay/client"
	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Output formats.
const (
	formatText        = "text"        // one line per event: time source type id
	formatJSON        = "json"        // one protojson document per line
	formatCloudEvents = "cloudevents" // CloudEvents 1.0 structured JSON, one per line
	formatData        = "data"        // the payload bytes only (events get)
)

func checkFormat(f string, allowed ...string) error {
	if !slices.Contains(allowed, f) {
		return usagef("-o %q: want %s", f, strings.Join(allowed, ", "))
	}
	return nil
}

// writeDelivery prints one delivery in format f: text and cloudevents describe its event,
// json is the whole Delivery (event, cursor, ack id, attempt).
func writeDelivery(w io.Writer, f string, d *eventrelayv1.Delivery) error {
	if f == formatJSON {
		return writeProtoLine(w, d)
	}
	return writeEvent(w, f, d.GetEvent())
}

// writeEvent prints one event in format f.
func writeEvent(w io.Writer, f string, ev *eventrelayv1.Event) error {
	var err error
	switch f {
	case formatText:
		_, err = fmt.Fprintf(w, "%s %s %s %s\n", formatTime(ev.GetTime()), textField(ev.GetSource()), textField(ev.GetType()), textField(ev.GetId()))
	case formatJSON:
		err = writeProtoLine(w, ev)
	case formatCloudEvents:
		var b []byte
		if b, err = client.MarshalCloudEvent(ev); err == nil {
			_, err = w.Write(b)
		}
	case formatData:
		_, err = w.Write(ev.GetData())
	default:
		err = fmt.Errorf("unknown format %q", f)
	}
	return err
}

// textField is one space-separated field of a text line: "-" when empty, quoted (Go syntax)
// when it contains spaces, quotes or unprintable characters (GitLab's "Push Hook").
func textField(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// jsonOptions marshal messages as relayd's HTTP API does: protojson with the proto field names
// (received_time, ack_id), so one jq filter reads both.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true}

// writeProtoLine writes m as protojson on one line.
func writeProtoLine(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil { // protojson's whitespace is not stable
		return err
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}
