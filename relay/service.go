package relay

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Source is a configured source with its verifier.
type Source struct {
	Config   SourceConfig
	Verifier Verifier
}

// Partitions returns every partition of the source.
func (s *Source) Partitions() []Partition {
	ps := make([]Partition, s.Config.Partitions)
	for i := range ps {
		ps[i] = Partition{Source: s.Config.Name, Index: i}
	}
	return ps
}

// Options configure a Service. Zero values take the documented defaults.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// TailBuffer is how many entries a tail subscriber may fall behind the shared reader
	// before it is ended with RESOURCE_EXHAUSTED (default 4096).
	TailBuffer int
	// ReplayBatch is how many entries one history read fetches (default 1000).
	ReplayBatch int
	// ReadBlock is how long a shared reader blocks per read (default 2s).
	ReadBlock time.Duration
	// AckDelay is how long an acknowledgement made with AcknowledgeLater may wait for its
	// subscription's next read of the partition, with which it is written, before it is
	// written on its own (default 2ms).
	AckDelay time.Duration
	// MinHeartbeat is the shortest heartbeat_interval a subscription may ask for (default and
	// floor MinHeartbeat); a shorter one is INVALID_ARGUMENT. Every heartbeat is a send on
	// every stream: a thousand streams at 100 ms cost relayd a core.
	MinHeartbeat time.Duration
	// CheckPartitions refuses appends (CodeUnavailable) until EnsurePartitions has
	// succeeded: an append with another partition count than the one the source's events
	// were stored with would put events in other partitions than their keys' stored ones.
	CheckPartitions bool
	// CompileFilter compiles the filter expressions of subscriptions (relay/filter.Compile);
	// nil: a subscription with a filter is CodeUnimplemented.
	CompileFilter FilterCompiler
	// OnFilterError, when set, is called for every event a filter could not evaluate (the
	// event counts as not matching); it must be cheap and safe for concurrent use.
	OnFilterError func(err error)
}

// Service is eventrelay's domain service: ingest (verify, build, append), publish, history
// and subscriptions, on top of a Store.
type Service struct {
	store   Store
	sources map[string]*Source
	names   []string
	opts    Options
	log     *slog.Logger
	hub     *hub
	groups  groupRegistry
	ackKeys ackKeyCache

	partitionsOK atomic.Bool // see Options.CheckPartitions

	closeOnce sync.Once
	closing   context.Context
	close     context.CancelFunc
}

// NewService returns a Service over store serving sources.
func NewService(store Store, sources []*Source, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.TailBuffer <= 0 {
		opts.TailBuffer = 4096
	}
	if opts.ReplayBatch <= 0 {
		opts.ReplayBatch = 1000
	}
	if opts.ReadBlock <= 0 {
		opts.ReadBlock = 2 * time.Second
	}
	if opts.AckDelay <= 0 {
		opts.AckDelay = 2 * time.Millisecond
	}
	s := &Service{store: store, sources: map[string]*Source{}, opts: opts, log: opts.Logger}
	for _, src := range sources {
		if _, dup := s.sources[src.Config.Name]; dup {
			return nil, fmt.Errorf("source %q configured twice", src.Config.Name)
		}
		if src.Verifier == nil {
			return nil, fmt.Errorf("source %q has no verifier", src.Config.Name)
		}
		s.sources[src.Config.Name] = src
		s.names = append(s.names, src.Config.Name)
	}
	sort.Strings(s.names)
	s.hub = newHub(store, opts.TailBuffer, opts.ReadBlock, opts.Logger)
	s.closing, s.close = context.WithCancel(context.Background())
	return s, nil
}

// Close ends every subscription with CodeUnavailable (clients resume by cursor) and stops the
// shared readers. It is idempotent and does not close the store.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.close()
		s.hub.close()
	})
	return nil
}

// Store returns the service's store.
func (s *Service) Store() Store { return s.store }

// SourceNames returns the configured source names, sorted.
func (s *Service) SourceNames() []string { return s.names }

// Source returns a configured source, or a CodeNotFound error.
func (s *Service) Source(name string) (*Source, error) {
	src, ok := s.sources[name]
	if !ok {
		return nil, Errorf(CodeNotFound, "unknown source %q", name)
	}
	return src, nil
}

// IngestResult is the outcome of a webhook or a publish.
type IngestResult struct {
	EventID   string
	Duplicate bool
	// Handshake is set when the request was a provider handshake: answer it, nothing stored.
	Handshake *Handshake
	// Partition and EntryID say where the event is (for a duplicate: the original).
	Partition Partition
	EntryID   ID
	// Verified is the verifier's result (nil for Publish).
	Verified *Verified
}

// Ingest verifies one webhook of source and appends it. It answers only after the store
// acknowledged the append.
func (s *Service) Ingest(ctx context.Context, source string, req *WebhookRequest) (*IngestResult, error) {
	src, err := s.Source(source)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	v, err := src.Verifier.Verify(req, now)
	if err != nil {
		return nil, err
	}
	if v.Handshake != nil {
		return &IngestResult{Handshake: v.Handshake, Verified: v}, nil
	}
	ev := &eventrelayv1.Event{
		Id:              v.ID,
		Source:          source,
		Type:            v.Type,
		Subject:         v.Subject,
		ReceivedTime:    timestamppb.New(now),
		DataContentType: req.ContentType,
		Data:            req.Body,
		Headers:         v.Headers,
		TraceParent:     traceParent(req.Header),
		Verification: &eventrelayv1.Verification{
			Provider: v.Provider,
			Scheme:   v.Scheme,
			KeyIndex: int32(v.KeyIndex),
			KeyId:    v.KeyID,
		},
	}
	if !v.SignedTime.IsZero() {
		ev.Verification.SignedTime = timestamppb.New(v.SignedTime)
	}
	if !v.Time.IsZero() {
		ev.Time = timestamppb.New(v.Time)
	} else {
		ev.Time = ev.ReceivedTime
	}
	if ev.Id == "" {
		ev.Id = NewUUIDv7(now)
	} else if err := validateNewEventID(ev.Id); err != nil {
		return nil, err
	}
	ev.PartitionKey = PartitionKey(&src.Config, req.Header.Get, req.Body, ev.Id)
	res, err := s.append(ctx, src, ev)
	if err != nil {
		return nil, err
	}
	res.Verified = v
	return res, nil
}

// traceParent returns the request's W3C traceparent when it is well formed.
func traceParent(h http.Header) string {
	tp := h.Get("Traceparent")
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	for i := 0; i < len(tp); i++ {
		c := tp[i]
		if c != '-' && !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return ""
		}
	}
	return tp
}

// PublishInput is an event from an internal producer.
type PublishInput struct {
	Source          string
	ID              string
	Type            string
	Subject         string
	Time            time.Time
	DataContentType string
	Data            []byte
	Headers         map[string]string
	PartitionKey    string
	TraceParent     string
}

// Publish appends an event from an internal producer (no signature).
func (s *Service) Publish(ctx context.Context, in PublishInput) (*IngestResult, error) {
	src, err := s.Source(in.Source)
	if err != nil {
		return nil, err
	}
	if int64(len(in.Data)) > src.Config.MaxBodyBytes {
		return nil, Errorf(CodeTooLarge, "data: larger than the source's max_body_bytes (%d bytes)", src.Config.MaxBodyBytes)
	}
	now := s.opts.Now()
	ev := &eventrelayv1.Event{
		Id:              in.ID,
		Source:          in.Source,
		Type:            in.Type,
		Subject:         in.Subject,
		ReceivedTime:    timestamppb.New(now),
		DataContentType: in.DataContentType,
		Data:            in.Data,
		Headers:         in.Headers,
		TraceParent:     in.TraceParent,
	}
	if ev.DataContentType == "" {
		ev.DataContentType = "application/json"
	}
	if in.Time.IsZero() {
		ev.Time = ev.ReceivedTime
	} else {
		ev.Time = timestamppb.New(in.Time)
	}
	if ev.Id == "" {
		ev.Id = NewUUIDv7(now)
	} else if err := validateNewEventID(ev.Id); err != nil {
		return nil, err
	}
	ev.PartitionKey = in.PartitionKey
	if ev.PartitionKey == "" {
		ev.PartitionKey = ev.Id
	}
	return s.append(ctx, src, ev)
}

func (s *Service) append(ctx context.Context, src *Source, ev *eventrelayv1.Event) (*IngestResult, error) {
	if err := checkSizes(ev); err != nil {
		return nil, err
	}
	if err := checkUTF8(ev); err != nil {
		return nil, err
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		return nil, WrapError(CodeInternal, err, "encoding the event failed")
	}
	if limit := src.Config.MaxBodyBytes + EnvelopeAllowance; int64(len(b)) > limit {
		return nil, Errorf(CodeInvalid, "event: %d bytes stored, more than the source's max_body_bytes plus %d bytes of attributes and headers", len(b), EnvelopeAllowance)
	}
	if s.opts.CheckPartitions && !s.partitionsOK.Load() {
		return nil, Errorf(CodeUnavailable, "store unavailable: the partition counts are not verified yet")
	}
	p := Partition{Source: src.Config.Name, Index: PartitionOf(ev.PartitionKey, src.Config.Partitions)}
	res, err := s.store.Append(ctx, AppendRequest{
		Partition:    p,
		DedupeKey:    ev.Id,
		DedupeWindow: src.Config.DedupeWindow,
		Event:        b,
		Retention:    src.Config.Retention,
		MaxLen:       src.Config.MaxLen,
	})
	if err != nil {
		return nil, err
	}
	return &IngestResult{EventID: ev.Id, Duplicate: res.Duplicate, Partition: p, EntryID: res.ID}, nil
}

// Bounds of an event's attributes, checked for every event stored (Publish over gRPC and
// HTTP, webhooks): a larger one is refused with CodeInvalid naming the field, and nothing
// is stored. The data is bounded by the source's max_body_bytes; the whole stored entry by
// max_body_bytes + EnvelopeAllowance.
const (
	MaxTypeLen        = 256
	MaxSubjectLen     = 1024
	MaxPartitionKey   = 256
	MaxContentTypeLen = 256
	MaxTraceParentLen = 256
	MaxHeaders        = 100
	MaxHeaderNameLen  = 256
	MaxHeaderValueLen = 8 << 10
	MaxHeadersBytes   = 64 << 10 // names and values of all headers together
	// EnvelopeAllowance is what a stored entry may hold beyond its data: attributes,
	// headers and encoding (the bounds above add up to less).
	EnvelopeAllowance = 80 << 10
)

func checkSizes(ev *eventrelayv1.Event) error {
	for _, f := range [...]struct {
		name string
		v    string
		max  int
	}{{"type", ev.Type, MaxTypeLen}, {"subject", ev.Subject, MaxSubjectLen}, {"partition_key", ev.PartitionKey, MaxPartitionKey},
		{"data_content_type", ev.DataContentType, MaxContentTypeLen}, {"trace_parent", ev.TraceParent, MaxTraceParentLen}} {
		if len(f.v) > f.max {
			return Errorf(CodeInvalid, "%s: %d bytes, at most %d", f.name, len(f.v), f.max)
		}
	}
	if len(ev.Id) > MaxEventIDLen {
		return Errorf(CodeInvalid, "id: %d bytes, at most %d", len(ev.Id), MaxEventIDLen)
	}
	if len(ev.Headers) > MaxHeaders {
		return Errorf(CodeInvalid, "headers: %d, at most %d", len(ev.Headers), MaxHeaders)
	}
	total := 0
	for k, v := range ev.Headers {
		if len(k) > MaxHeaderNameLen {
			return Errorf(CodeInvalid, "headers: a name of %d bytes, at most %d", len(k), MaxHeaderNameLen)
		}
		if len(v) > MaxHeaderValueLen {
			return Errorf(CodeInvalid, "headers[%q]: %d bytes, at most %d", strings.ToValidUTF8(k, "?"), len(v), MaxHeaderValueLen)
		}
		total += len(k) + len(v)
	}
	if total > MaxHeadersBytes {
		return Errorf(CodeInvalid, "headers: %d bytes together, at most %d", total, MaxHeadersBytes)
	}
	return nil
}

// checkUTF8 rejects attribute values that are not valid UTF-8 (protobuf strings must be):
// a request carrying one is malformed, not an internal failure.
func checkUTF8(ev *eventrelayv1.Event) error {
	for _, f := range [...]struct{ name, v string }{{"id", ev.Id}, {"type", ev.Type}, {"subject", ev.Subject},
		{"content type", ev.DataContentType}, {"partition key", ev.PartitionKey}, {"traceparent", ev.TraceParent}} {
		if !utf8.ValidString(f.v) {
			return Errorf(CodeInvalid, "event %s is not valid UTF-8", f.name)
		}
	}
	for k, v := range ev.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return Errorf(CodeInvalid, "header %q is not valid UTF-8", strings.ToValidUTF8(k, "?"))
		}
	}
	return nil
}

// DecodeEvent parses a stored event.
func DecodeEvent(b []byte) (*eventrelayv1.Event, error) {
	ev := &eventrelayv1.Event{}
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, WrapError(CodeInternal, err, "stored event is corrupt")
	}
	return ev, nil
}

// GetEvent returns one event of source by id, looking in every partition.
func (s *Service) GetEvent(ctx context.Context, source, id string) (*eventrelayv1.Event, error) {
	it, err := s.FindEvent(ctx, source, id)
	if err != nil {
		return nil, err
	}
	return DecodeEvent(it.Entry.Event)
}

// FindEvent finds a stored event by source and id, as GetEvent, with its partition and the
// cursor just after it.
func (s *Service) FindEvent(ctx context.Context, source, id string) (ListItem, error) {
	src, err := s.Source(source)
	if err != nil {
		return ListItem{}, err
	}
	if err := ValidateEventID(id); err != nil {
		return ListItem{}, err
	}
	for _, p := range src.Partitions() {
		e, err := s.store.Lookup(ctx, p, id)
		if ErrorCode(err) == CodeNotFound {
			continue
		}
		if err != nil {
			return ListItem{}, err
		}
		return ListItem{Partition: p, Entry: e, Cursor: cursorAfter(src.Partitions(), p, e.ID, false, "")}, nil
	}
	return ListItem{}, Errorf(CodeNotFound, "event %q not found in source %q (ids are found within the retention and dedupe window)", id, source)
}

// cursorAfter is the cursor just after the entry id of partition p, one of parts (a source's
// partitions): p resumes after id, and every other partition after the millisecond before
// id's. Stream ids order a source's entries by their append time to the millisecond, so a
// subscription resumed from it gets every event appended after the entry in any partition,
// and may repeat the other partitions' events of that same millisecond; it never skips one.
// (A cursor of p alone would have the other partitions start at the subscription's start.)
func cursorAfter(parts []Partition, p Partition, id ID, deadLetters bool, group string) string {
	pos := make(map[Partition]ID, len(parts))
	for _, q := range parts {
		pos[q] = ID{}
		if id.Ms > 0 {
			pos[q] = ID{Ms: id.Ms - 1, Seq: math.MaxUint64}
		}
	}
	pos[p] = id
	return EncodeCursor(Cursor{Positions: pos, DeadLetters: deadLetters, Group: group})
}

// ListQuery pages through history.
type ListQuery struct {
	Source      string
	PageSize    int
	PageToken   string
	NewestFirst bool
	Start, End  time.Time // End exclusive
	// DeadLetters lists the dead letters of Group (which it requires) instead of the stream.
	DeadLetters bool
	Group       string
	// Types keeps only the events whose type matches one of these globs (empty: all). A page
	// may then hold fewer than PageSize events with a next page token: one call reads at most
	// MaxListScan entries.
	Types TypeFilter
}

// MaxListScan bounds the entries one ListEvents call reads when Types leaves most of them out.
const MaxListScan = 10000

// MaxListPageBytes bounds the events of one ListEvents page (the bytes of their stored form
// and of their cursors): a page ends early, with a next page token, before it would pass it, so that an
// answer stays within grpc-go's default 4 MiB receive limit and a few calls cannot fill
// relayd's memory. A page always holds at least one event.
const MaxListPageBytes = 3 << 20

// listChunk is how many entries ListEvents reads from a partition at a time (at most the
// page size and one): with events up to max_body_bytes each, reading page_size + 1 from every
// partition at once could hold gigabytes for one call.
const listChunk = 64

// ListItem is one listed event with the cursor just after it.
type ListItem struct {
	Partition Partition
	Entry     Entry
	Cursor    string
}

// ListEvents returns one page of a source's history, merged across partitions by entry id.
// The page token is a cursor: the position in every partition already listed.
func (s *Service) ListEvents(ctx context.Context, q ListQuery) ([]ListItem, string, error) {
	src, err := s.Source(q.Source)
	if err != nil {
		return nil, "", err
	}
	if q.PageSize == 0 {
		q.PageSize = 100
	}
	if q.PageSize < 0 || q.PageSize > 1000 {
		return nil, "", Errorf(CodeInvalid, "page_size must be 1 to 1000")
	}
	if len(q.Types) > 100 {
		return nil, "", Errorf(CodeInvalid, "types: at most 100 filters")
	}
	var rng func(ctx context.Context, p Partition, start, end ID, count int, reverse bool) ([]Entry, error) = s.store.Range
	switch {
	case q.DeadLetters:
		if err := checkDeadLetterGroup(q.Group); err != nil {
			return nil, "", err
		}
		gs := s.store
		rng = func(ctx context.Context, p Partition, start, end ID, count int, reverse bool) ([]Entry, error) {
			return gs.RangeDeadLetters(ctx, p, q.Group, start, end, count, reverse)
		}
	case q.Group != "":
		return nil, "", Errorf(CodeInvalid, "group: only a dead-letter listing takes a group")
	}
	lo, hi := ID{}, MaxID
	if !q.Start.IsZero() {
		lo = IDFromTime(q.Start)
	}
	if !q.End.IsZero() {
		hi = IDFromTime(q.End).Prev()
	}
	pos := map[Partition]ID{}
	if q.PageToken != "" {
		c, err := DecodeCursor(q.PageToken)
		if err != nil {
			return nil, "", Errorf(CodeInvalid, "page_token: not a valid page token")
		}
		if err := c.kindMismatch("page_token", q.DeadLetters, q.Group); err != nil {
			return nil, "", err
		}
		for p := range c.Positions {
			if p.Source != q.Source {
				return nil, "", Errorf(CodeInvalid, "page_token: a page token of source %s, not %s", p.Source, q.Source)
			}
		}
		pos = c.Positions
	}
	type head struct {
		p       Partition
		entries []Entry
		done    bool // the last read reached the end of the range
	}
	parts := src.Partitions()
	chunk := min(q.PageSize+1, listChunk)
	fetch := func(h *head, start, end ID) error {
		es, err := rng(ctx, h.p, start, end, chunk, q.NewestFirst)
		h.entries, h.done = es, len(es) < chunk
		return err
	}
	var heads []*head
	scanned := 0
	for _, p := range parts {
		start, end := lo, hi
		if last, ok := pos[p]; ok {
			if q.NewestFirst {
				end = last.Prev()
			} else {
				start = last.Next()
			}
		}
		if end.Less(start) {
			continue
		}
		h := &head{p: p}
		if err := fetch(h, start, end); err != nil {
			return nil, "", err
		}
		scanned += len(h.entries)
		if len(h.entries) > 0 {
			heads = append(heads, h)
		}
	}
	var items []ListItem
	more := false
	pageBytes := 0
	for {
		best := -1
		for i, h := range heads {
			if len(h.entries) == 0 && !h.done && scanned < MaxListScan {
				// Every entry read so far was taken, or left out by Types: read on.
				last := pos[h.p]
				start, end := last.Next(), hi
				if q.NewestFirst {
					start, end = lo, last.Prev()
				}
				if err := fetch(h, start, end); err != nil {
					return nil, "", err
				}
				scanned += len(h.entries)
			}
			if len(h.entries) == 0 {
				if !h.done {
					more = true // stopped by MaxListScan
				}
				continue
			}
			if best < 0 || (h.entries[0].ID.Less(heads[best].entries[0].ID) != q.NewestFirst) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		if len(items) == q.PageSize {
			more = true
			break
		}
		e := heads[best].entries[0]
		if len(q.Types) > 0 && !q.Types.Match(EventType(e.Event)) {
			heads[best].entries = heads[best].entries[1:]
			pos[heads[best].p] = e.ID
			continue
		}
		// Each item carries a cursor over every partition: with many partitions it can be
		// larger than the event, so both count against the page's bound.
		cursor := cursorAfter(parts, heads[best].p, e.ID, q.DeadLetters, q.Group)
		if len(items) > 0 && pageBytes+len(e.Event)+len(cursor) > MaxListPageBytes {
			more = true
			break
		}
		heads[best].entries = heads[best].entries[1:]
		pos[heads[best].p] = e.ID
		pageBytes += len(e.Event) + len(cursor)
		items = append(items, ListItem{Partition: heads[best].p, Entry: e, Cursor: cursor})
	}
	next := ""
	if more {
		next = EncodeCursor(Cursor{Positions: pos, DeadLetters: q.DeadLetters, Group: q.Group})
	}
	return items, next, nil
}

// EnsurePartitions records every source's partition count in the store the first time, and
// afterwards checks it against the record (Store.EnsurePartitions): a source whose count
// changed is refused with CodeFailedPrecondition naming it and how to migrate. Once it has
// succeeded, appends are accepted (Options.CheckPartitions).
func (s *Service) EnsurePartitions(ctx context.Context) error {
	for _, name := range s.names {
		if err := s.store.EnsurePartitions(ctx, name, s.sources[name].Config.Partitions); err != nil {
			return err
		}
	}
	s.partitionsOK.Store(true)
	return nil
}

// PartitionsChecked reports whether EnsurePartitions has succeeded.
func (s *Service) PartitionsChecked() bool { return s.partitionsOK.Load() }
