package server

import (
	"encoding/json"
	"io"
	"strconv"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
)

// rawBodyMarshaler is the gateway marshaler for every content type. grpc-gateway does not
// decode HttpBody request bodies by itself: this one reads the raw bytes into a
// google.api.HttpBody field untouched, writes HttpBody responses (and webhook handshakes)
// byte for byte with their own content type, and defers to JSON (proto field names, unset
// fields included) for everything else.
type rawBodyMarshaler struct {
	*runtime.JSONPb
}

func newRawBodyMarshaler() *rawBodyMarshaler {
	return &rawBodyMarshaler{JSONPb: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

func handshakeOf(v any) *httpbody.HttpBody {
	switch m := v.(type) {
	case *httpbody.HttpBody:
		return m
	case *eventrelayv1.ReceiveWebhookResponse:
		return m.GetHandshake()
	}
	return nil
}

// ContentType is the HttpBody's content type for raw bodies, else JSON.
func (m *rawBodyMarshaler) ContentType(v any) string {
	if b := handshakeOf(v); b != nil {
		return b.GetContentType()
	}
	return m.JSONPb.ContentType(v)
}

// StreamContentType is the content type of a server stream (Subscribe over HTTP):
// newline-delimited JSON, one {"result": ...} or {"error": ...} object per line.
func (m *rawBodyMarshaler) StreamContentType(any) string { return "application/x-ndjson" }

// Marshal writes raw bodies as they are and everything else as JSON. A stored webhook is
// answered exactly {"event_id": "...", "duplicate": false}.
func (m *rawBodyMarshaler) Marshal(v any) ([]byte, error) {
	if b := handshakeOf(v); b != nil {
		return b.GetData(), nil
	}
	if r, ok := v.(*eventrelayv1.ReceiveWebhookResponse); ok {
		return webhookAnswer(r.GetEventId(), r.GetDuplicate())
	}
	return m.JSONPb.Marshal(v)
}

// NewDecoder reads HttpBody fields raw and everything else as JSON.
func (m *rawBodyMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		switch b := v.(type) {
		case **httpbody.HttpBody:
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			*b = &httpbody.HttpBody{Data: data}
			return nil
		case *httpbody.HttpBody:
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			b.Data = data
			return nil
		}
		return m.JSONPb.NewDecoder(r).Decode(v)
	})
}

// webhookAnswer is {"event_id":"...","duplicate":false} exactly as encoding/json writes it,
// without its reflection for the ids that need no escaping (all but those with quotes,
// backslashes, <, >, & or non-ASCII bytes).
func webhookAnswer(id string, duplicate bool) ([]byte, error) {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return json.Marshal(struct {
				EventID   string `json:"event_id"`
				Duplicate bool   `json:"duplicate"`
			}{id, duplicate})
		}
	}
	b := make([]byte, 0, len(id)+35)
	b = append(b, `{"event_id":"`...)
	b = append(b, id...)
	b = append(b, `","duplicate":`...)
	b = strconv.AppendBool(b, duplicate)
	return append(b, '}'), nil
}
