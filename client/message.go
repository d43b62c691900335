package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"sync"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Message is one event handed to a handler.
type Message struct {
	// Event is the event as relayd stored it; Event.Data is the provider's raw body.
	Event *eventrelayv1.Event
	// Cursor is the stream position as of this message (tail subscriptions).
	Cursor string
	// AckID identifies the delivery in group mode ("" for a tail).
	AckID string
	// Attempt is the delivery attempt in group mode (1 for the first).
	Attempt int

	c       *Client
	mu      sync.Mutex
	settled bool
}

// ErrNoGroup is returned by Ack, Nack and ModifyAckDeadline on a tail message.
var ErrNoGroup = errors.New("client: not a group delivery")

// ErrSettled is returned by Ack and Nack on a message already acknowledged or nacked.
var ErrSettled = errors.New("client: the message was already acknowledged or nacked")

// Ack acknowledges the delivery now, whatever the handler returns afterwards.
func (m *Message) Ack(ctx context.Context) error {
	if err := m.settle(); err != nil {
		return err
	}
	resp, err := m.c.API().Acknowledge(ctx, &eventrelayv1.AcknowledgeRequest{AckIds: []string{m.AckID}})
	return settleResult(err, resp.GetUnknownAckIds())
}

// Nack hands the delivery back to be redelivered after delay (0: at once), whatever the
// handler returns afterwards.
func (m *Message) Nack(ctx context.Context, delay time.Duration) error {
	if err := m.settle(); err != nil {
		return err
	}
	resp, err := m.c.API().Nack(ctx, &eventrelayv1.NackRequest{AckIds: []string{m.AckID}, Delay: durationpb.New(delay)})
	return settleResult(err, resp.GetUnknownAckIds())
}

// ModifyAckDeadline sets the delivery's ack deadline to d from now: call it before the
// deadline passes while the work goes on (Receive does it for you when
// Subscription.AckDeadline is set).
func (m *Message) ModifyAckDeadline(ctx context.Context, d time.Duration) error {
	if m.AckID == "" {
		return ErrNoGroup
	}
	resp, err := m.c.API().ModifyAckDeadline(ctx, &eventrelayv1.ModifyAckDeadlineRequest{AckIds: []string{m.AckID}, AckDeadline: durationpb.New(d)})
	return settleResult(err, resp.GetUnknownAckIds())
}

// settle marks the message settled, once.
func (m *Message) settle() error {
	if m.AckID == "" {
		return ErrNoGroup
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.settled {
		return ErrSettled
	}
	m.settled = true
	return nil
}

func (m *Message) isSettled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settled
}

// ErrExpired is returned when relayd no longer knew the delivery: its ack deadline passed
// (it is redelivered) or it was settled through another call.
var ErrExpired = errors.New("client: the delivery is no longer pending (its ack deadline passed)")

func settleResult(err error, unknown []string) error {
	if err != nil {
		return statusError(err)
	}
	if len(unknown) > 0 {
		return ErrExpired
	}
	return nil
}

// DecodeJSON unmarshals the event's payload into v. A payload that is not JSON is an error
// naming its content type.
func (m *Message) DecodeJSON(v any) error {
	if ct := m.Event.GetDataContentType(); ct != "" && !isJSON(ct) {
		return fmt.Errorf("client: event %s: data is %s, not JSON", m.Event.GetId(), ct)
	}
	if err := json.Unmarshal(m.Event.GetData(), v); err != nil {
		return fmt.Errorf("client: event %s: %w", m.Event.GetId(), err)
	}
	return nil
}

// UntypedEvent is the CloudEvents type of an event whose provider gave none (CloudEvents
// requires one).
const UntypedEvent = "eventrelay.untyped"

// CloudEvent is an event in the CloudEvents 1.0 JSON format (structured mode). eventrelay's
// own attributes are extensions: receivedtime, partitionkey, traceparent.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	DataBase64      []byte          `json:"data_base64,omitempty"`
	ReceivedTime    string          `json:"receivedtime,omitempty"`
	PartitionKey    string          `json:"partitionkey,omitempty"`
	TraceParent     string          `json:"traceparent,omitempty"`
}

// ToCloudEvent converts an event: JSON payloads become data, others data_base64.
func ToCloudEvent(ev *eventrelayv1.Event) CloudEvent {
	ce := CloudEvent{
		SpecVersion:     "1.0",
		ID:              ev.GetId(),
		Source:          ev.GetSource(),
		Type:            ev.GetType(),
		Subject:         ev.GetSubject(),
		DataContentType: ev.GetDataContentType(),
		PartitionKey:    ev.GetPartitionKey(),
		TraceParent:     ev.GetTraceParent(),
	}
	if ce.Type == "" {
		ce.Type = UntypedEvent
	}
	if ev.GetTime() != nil {
		ce.Time = ev.GetTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if ev.GetReceivedTime() != nil {
		ce.ReceivedTime = ev.GetReceivedTime().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if data := ev.GetData(); len(data) > 0 {
		if isJSON(ce.DataContentType) && json.Valid(data) {
			ce.Data = data
		} else {
			ce.DataBase64 = data
		}
	}
	return ce
}

// CloudEvent returns the message's event in the CloudEvents format.
func (m *Message) CloudEvent() CloudEvent { return ToCloudEvent(m.Event) }

// MarshalCloudEvent encodes an event as one line of CloudEvents JSON (no HTML escaping,
// ending in a newline).
func MarshalCloudEvent(ev *eventrelayv1.Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ToCloudEvent(ev)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// isJSON reports whether a content type is JSON: application/json, text/json or anything
// with a +json suffix.
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
