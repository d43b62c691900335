package relay

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Filter is a compiled filter expression (SubscribeRequest.Filter): a subscription delivers
// only the events it matches. relay/filter compiles CEL expressions into Filters; the domain
// sees only this interface (Options.CompileFilter).
type Filter interface {
	// Match reports whether the event in matches. An error (a missing field, a wrong type,
	// the cost limit) means no match: the subscription skips the event, counts the error
	// (Options.OnFilterError) and goes on.
	Match(in *FilterInput) (bool, error)
	// UsesData reports whether the expression reads the payload; when it does not, the
	// payload is never parsed.
	UsesData() bool
}

// RawMatcher is a Filter that also matches a stored event given as its bytes alone, for an
// event no other subscription shares (a replay's, a group member's): relay/filter's filters,
// which need no FilterInput at all when they read only string fields of the event.
type RawMatcher interface {
	MatchRaw(raw []byte) (bool, error)
}

// FilterCompiler compiles a filter expression. A bad expression is a CodeInvalid *Error
// whose message names the problem and its position.
type FilterCompiler func(expr string) (Filter, error)

// MaxFilterLen bounds the length of a filter expression.
const MaxFilterLen = 4096

// FilterInput is what a filter reads of one stored entry: the event, decoded once, and its
// payload parsed as JSON once, both on first use. The shared tail reader keeps one per
// entry for all its subscribers, so however many filtered subscriptions read an entry,
// relayd decodes and parses it once. It is safe for concurrent use.
type FilterInput struct {
	raw []byte
	// shared: the input is kept by the shared tail reader for all its subscribers.
	shared bool

	evOnce sync.Once
	ev     *eventrelayv1.Event
	evErr  error
	evDone atomic.Bool

	dataOnce sync.Once
	data     any
}

// NewFilterInput returns the input of the stored event raw (an encoded eventrelay.v1.Event).
func NewFilterInput(raw []byte) *FilterInput { return &FilterInput{raw: raw} }

// Raw returns the stored event, an encoded eventrelay.v1.Event (not to be modified).
func (in *FilterInput) Raw() []byte { return in.raw }

// Event returns the decoded event.
func (in *FilterInput) Event() (*eventrelayv1.Event, error) {
	in.evOnce.Do(func() {
		ev := &eventrelayv1.Event{}
		if err := proto.Unmarshal(in.raw, ev); err != nil {
			in.evErr = WrapError(CodeInternal, err, "stored event does not decode")
			return
		}
		in.ev = ev
	})
	in.evDone.Store(true)
	return in.ev, in.evErr
}

// EventFields returns the event with at least the fields numbered fields decoded. Only those
// are decoded, for this call alone, so that a filter reading event.type does not pay for the
// payload and the headers; but the whole event is decoded (once, as Event does) when fields is
// nil, when it is decoded already, or when the input is shared by the subscribers of the tail
// reader, for which decoding it once for all is cheaper.
func (in *FilterInput) EventFields(fields []protowire.Number) (*eventrelayv1.Event, error) {
	if fields == nil || in.shared || in.evDone.Load() {
		return in.Event()
	}
	var keep []byte
	for b := in.raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := -1
		if n >= 0 {
			m = protowire.ConsumeFieldValue(num, typ, b[n:])
		}
		if m < 0 {
			return nil, Errorf(CodeInternal, "stored event does not decode")
		}
		if slices.Contains(fields, num) {
			keep = append(keep, b[:n+m]...)
		}
		b = b[n+m:]
	}
	ev := &eventrelayv1.Event{}
	if err := proto.Unmarshal(keep, ev); err != nil {
		return nil, WrapError(CodeInternal, err, "stored event does not decode")
	}
	return ev, nil
}

// Data returns the payload parsed as JSON (objects as map[string]any, arrays as []any,
// integers that fit as int64, other numbers as float64), or nil when the event is not JSON:
// its data_content_type names another format, or the bytes do not parse.
func (in *FilterInput) Data() any {
	in.dataOnce.Do(func() {
		ev, err := in.Event()
		if err != nil || !jsonContent(ev.GetDataContentType(), ev.GetData()) {
			return
		}
		d := json.NewDecoder(bytes.NewReader(ev.GetData()))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || d.More() {
			return
		}
		in.data = jsonNumbers(v)
	})
	return in.data
}

// jsonContent reports whether a payload of content type ct is parsed as JSON: a JSON media
// type (application/json, application/*+json, text/json), or none given and the bytes look
// like a JSON object or array.
func jsonContent(ct string, data []byte) bool {
	if ct == "" {
		b := bytes.TrimLeft(data, " \t\r\n")
		return len(b) > 0 && (b[0] == '{' || b[0] == '[')
	}
	mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
	mt = strings.TrimSpace(mt)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// jsonNumbers replaces the json.Numbers in v by int64 (when integral and in range) or
// float64.
func jsonNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonNumbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// CompileFilter compiles expr with the configured compiler (Options.CompileFilter); "" is
// no filter (nil). A bad expression is a CodeInvalid *Error naming the problem.
func (s *Service) CompileFilter(expr string) (Filter, error) { return s.compileFilter(expr) }

// Matches reports whether f matches the stored event raw (f nil: every event). An
// evaluation error is no match, reported to Options.OnFilterError.
func (s *Service) Matches(f Filter, raw []byte) bool {
	return s.filterMatch(f, nil, &Entry{Event: raw})
}

// compileFilter compiles expr with the configured compiler; "" is no filter.
func (s *Service) compileFilter(expr string) (Filter, error) {
	if expr == "" {
		return nil, nil
	}
	if len(expr) > MaxFilterLen {
		return nil, Errorf(CodeInvalid, "filter: at most %d bytes, got %d", MaxFilterLen, len(expr))
	}
	if s.opts.CompileFilter == nil {
		return nil, Errorf(CodeUnimplemented, "filter: this relay has no filter compiler")
	}
	return s.opts.CompileFilter(expr)
}

// filterMatch applies f to the entry (whose input in may be shared; nil: made here). An
// evaluation error is no match, reported to Options.OnFilterError.
func (s *Service) filterMatch(f Filter, in *FilterInput, e *Entry) bool {
	if f == nil {
		return true
	}
	var ok bool
	var err error
	if in != nil {
		ok, err = f.Match(in)
	} else if rm, raw := f.(RawMatcher); raw {
		ok, err = rm.MatchRaw(e.Event)
	} else {
		ok, err = f.Match(NewFilterInput(e.Event))
	}
	if err != nil {
		if s.opts.OnFilterError != nil {
			s.opts.OnFilterError(err)
		}
		return false
	}
	return ok
}
