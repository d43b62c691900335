// Package storetest is the conformance suite every relay.Store passes: Run it from a
// test with a constructor of fresh stores. The suite uses its own random source names, so
// stores handed to it may share one backend (one Redis server for the whole run); its
// subtests run in parallel.
//
// Unreachable checks the other half of the error contract on a store whose backend is gone.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// Run runs the conformance suite. newStore returns a fresh store (the suite closes it when
// the subtest ends); it may call t.Skip or t.Fatal.
func Run(t *testing.T, newStore func(t *testing.T) relay.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s relay.Store)
	}{
		{"AppendRange", testAppendRange},
		{"Order", testOrder},
		{"Dedupe", testDedupe},
		{"DedupeConcurrent", testDedupeConcurrent},
		{"DedupeWindowExpires", testDedupeWindowExpires},
		{"InvalidInput", testInvalidInput},
		{"RetentionMaxLen", testRetentionMaxLen},
		{"RetentionMinID", testRetentionMinID},
		{"RangeReverseBounds", testRangeReverseBounds},
		{"ReadBlocking", testReadBlocking},
		{"ReadTail", testReadTail},
		{"ReadCancel", testReadCancel},
		{"ReadAfterRetained", testReadAfterRetained},
		{"Info", testInfo},
		{"Stats", testStats},
		{"Lease", testLease},
		{"Lookup", testLookup},
		{"EnsureGroup", testEnsureGroup},
		{"ReadGroup", testReadGroup},
		{"AckReadGroup", testAckReadGroup},
		{"Claim", testClaim},
		{"Ack", testAck},
		{"SettleAttempt", testSettleAttempt},
		{"GroupSettings", testGroupSettings},
		{"DeadLetter", testDeadLetter},
		{"Redrive", testRedrive},
		{"GroupControl", testGroupControl},
		{"Batching", testBatching},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// Unreachable checks that every call on s, whose backend was stopped or cannot be reached,
// fails with CodeUnavailable within the given time.
func Unreachable(t *testing.T, s relay.Store, within time.Duration) {
	t.Helper()
	ctx := t.Context()
	p := relay.Partition{Source: "unreachable", Index: 0}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Append", func() error {
			_, err := s.Append(ctx, relay.AppendRequest{Partition: p, DedupeKey: "x", DedupeWindow: time.Minute, Event: []byte("x")})
			return err
		}},
		{"Range", func() error { _, err := s.Range(ctx, p, relay.ID{}, relay.MaxID, 10, false); return err }},
		{"Read", func() error {
			_, err := s.Read(ctx, map[relay.Partition]relay.ID{p: {}}, 10, 100*time.Millisecond)
			return err
		}},
		{"Info", func() error { _, err := s.Info(ctx, p); return err }},
		{"Lookup", func() error { _, err := s.Lookup(ctx, p, "x"); return err }},
		{"EnsureGroup", func() error { return s.EnsureGroup(ctx, p, "g", relay.ID{}) }},
		{"ReadGroup", func() error { _, err := s.ReadGroup(ctx, p, "g", "c", false, 10, 0); return err }},
		{"Ack", func() error { _, err := s.Ack(ctx, p, "g", []relay.ID{{Ms: 1}}, nil); return err }},
		{"AckReadGroup", func() error { _, _, err := s.AckReadGroup(ctx, p, "g", "c", []relay.ID{{Ms: 1}}, nil, 10); return err }},
		{"Redrive", func() error { _, err := s.Redrive(ctx, p, "g", nil); return err }},
	}
	// Concurrently: each call may take up to the store's timeout.
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { checkUnavailable(t, c.name, c.fn, within) })
	}
	wg.Wait()
}

func checkUnavailable(t *testing.T, name string, fn func() error, within time.Duration) {
	t.Helper()
	ended := make(chan error, 1)
	go func() { ended <- fn() }()
	var err error
	select {
	case err = <-ended:
	case <-time.After(within):
		t.Errorf("%s on an unreachable store has not returned after %s", name, within)
		return
	}
	if code := relay.ErrorCode(err); code != relay.CodeUnavailable {
		t.Errorf("%s on an unreachable store: got error %v (code %q), want code %q", name, err, code, relay.CodeUnavailable)
	}
	if err != nil && strings.Contains(relay.ErrorMessage(err), "dial") {
		t.Errorf("%s: client message %q leaks the cause", name, relay.ErrorMessage(err))
	}
}

// Helpers.

var sourceSeq atomic.Int64

// newSource returns a source name no other test uses.
func newSource(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("st%d-%s", sourceSeq.Add(1), hex.EncodeToString(b))
}

func part(t *testing.T) relay.Partition { return relay.Partition{Source: newSource(t), Index: 0} }

func req(p relay.Partition, key string, event []byte) relay.AppendRequest {
	return relay.AppendRequest{Partition: p, DedupeKey: key, DedupeWindow: time.Hour, Event: event}
}

func mustAppend(t *testing.T, s relay.Store, r relay.AppendRequest) relay.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), r)
	if err != nil {
		t.Fatalf("Append(%s, %q): %v", r.Partition, r.DedupeKey, err)
	}
	return res
}

// appendN appends n distinct events "<prefix>-<i>" and returns their ids.
func appendN(t *testing.T, s relay.Store, p relay.Partition, prefix string, n int) []relay.ID {
	t.Helper()
	ids := make([]relay.ID, n)
	for i := range n {
		key := fmt.Sprintf("%s-%d", prefix, i)
		res := mustAppend(t, s, req(p, key, []byte(key)))
		if res.Duplicate {
			t.Fatalf("Append %s: unexpected duplicate", key)
		}
		ids[i] = res.ID
	}
	return ids
}

func mustRange(t *testing.T, s relay.Store, p relay.Partition, start, end relay.ID, count int, reverse bool) []relay.Entry {
	t.Helper()
	es, err := s.Range(t.Context(), p, start, end, count, reverse)
	if err != nil {
		t.Fatalf("Range(%s): %v", p, err)
	}
	return es
}

func mustInfo(t *testing.T, s relay.Store, p relay.Partition) relay.StreamInfo {
	t.Helper()
	info, err := s.Info(t.Context(), p)
	if err != nil {
		t.Fatalf("Info(%s): %v", p, err)
	}
	return info
}

func ids(es []relay.Entry) []relay.ID {
	out := make([]relay.ID, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func counts(es []relay.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.DeliveryCount
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code relay.Code) {
	t.Helper()
	if got := relay.ErrorCode(err); got != code {
		t.Errorf("%s: got error %v (code %q), want code %q", what, err, got, code)
	}
}

// Append and range.

func testAppendRange(t *testing.T, s relay.Store) {
	p := part(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	events := [][]byte{
		[]byte(`{"id":"evt_1","type":"payment_intent.succeeded"}`),
		all,
		{},
		big,
		[]byte("\x00\r\n*3\r\n$3\r\nDEL\r\n"), // RESP-looking bytes are data too
	}
	var got []relay.ID
	for i, ev := range events {
		res := mustAppend(t, s, req(p, fmt.Sprintf("evt_%d", i), ev))
		if res.Duplicate || res.ID.IsZero() {
			t.Fatalf("Append %d: got %+v", i, res)
		}
		got = append(got, res.ID)
	}
	es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false)
	if len(es) != len(events) {
		t.Fatalf("Range: got %d entries, want %d", len(es), len(events))
	}
	for i, e := range es {
		if e.ID != got[i] {
			t.Errorf("entry %d: id %s, want %s", i, e.ID, got[i])
		}
		if !bytes.Equal(e.Event, events[i]) {
			t.Errorf("entry %d: event bytes differ (%d bytes, want %d)", i, len(e.Event), len(events[i]))
		}
	}
	// Keys are never interpreted: braces, colons, spaces, unicode and glob characters.
	for _, key := range []string{"a:b:{c}", "*", "evt 1", "ünïcødé-✓", "x]y[z?", strings.Repeat("k", 256)} {
		res := mustAppend(t, s, req(p, key, []byte(key)))
		e, err := s.Lookup(t.Context(), p, key)
		if err != nil || e.ID != res.ID || string(e.Event) != key {
			t.Errorf("key %q: Lookup = %+v, %v; want id %s", key, e, err, res.ID)
		}
	}
}

func testOrder(t *testing.T, s relay.Store) {
	p := part(t)
	want := appendN(t, s, p, "o", 100)
	for i := 1; i < len(want); i++ {
		if !want[i-1].Less(want[i]) {
			t.Fatalf("ids not increasing: %s then %s", want[i-1], want[i])
		}
	}
	es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false)
	if !slices.Equal(ids(es), want) {
		t.Fatalf("Range ids differ from append order")
	}
	for i, e := range es {
		if string(e.Event) != fmt.Sprintf("o-%d", i) {
			t.Fatalf("entry %d: event %q", i, e.Event)
		}
	}
}

func testDedupe(t *testing.T, s relay.Store) {
	p := part(t)
	first := mustAppend(t, s, req(p, "evt_dup", []byte("first")))
	second := mustAppend(t, s, req(p, "evt_dup", []byte("second")))
	if first.Duplicate || !second.Duplicate || second.ID != first.ID {
		t.Fatalf("got %+v then %+v; want a new entry, then a duplicate with the same id", first, second)
	}
	es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false)
	if len(es) != 1 || string(es[0].Event) != "first" {
		t.Fatalf("stored %d entries (%v), want only the first", len(es), es)
	}
	// Markers are per partition.
	other := relay.Partition{Source: p.Source, Index: 1}
	if res := mustAppend(t, s, req(other, "evt_dup", []byte("x"))); res.Duplicate {
		t.Errorf("same key in another partition was a duplicate")
	}
}

func testDedupeConcurrent(t *testing.T, s relay.Store) {
	p := part(t)
	const n = 50
	var wg sync.WaitGroup
	results := make([]relay.AppendResult, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.Append(t.Context(), req(p, "same", []byte(fmt.Sprint(i))))
		})
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Append %d: %v", i, errs[i])
		}
		if !results[i].Duplicate {
			fresh++
		}
		if results[i].ID != results[0].ID {
			t.Errorf("Append %d: id %s, want %s", i, results[i].ID, results[0].ID)
		}
	}
	if fresh != 1 {
		t.Errorf("%d appends stored, want exactly 1", fresh)
	}
	if es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false); len(es) != 1 {
		t.Errorf("stream holds %d entries, want 1", len(es))
	}
}

func testDedupeWindowExpires(t *testing.T, s relay.Store) {
	p := part(t)
	r := req(p, "short", []byte("v1"))
	r.DedupeWindow = time.Second
	first := mustAppend(t, s, r)
	if _, err := s.Lookup(t.Context(), p, "short"); err != nil {
		t.Fatalf("Lookup within the window: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Lookup(t.Context(), p, "short")
		if relay.ErrorCode(err) == relay.CodeNotFound {
			break
		}
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dedupe marker with a 1s window still present after 5s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	again := mustAppend(t, s, r)
	if again.Duplicate || again.ID == first.ID {
		t.Fatalf("after the window: got %+v, want a new entry", again)
	}
}

func testInvalidInput(t *testing.T, s relay.Store) {
	p := part(t)
	bad := []struct {
		name string
		r    relay.AppendRequest
	}{
		{"empty key", req(p, "", []byte("x"))},
		{"long key", req(p, strings.Repeat("k", 257), []byte("x"))},
		{"newline in key", req(p, "a\nb", []byte("x"))},
		{"NUL in key", req(p, "a\x00b", []byte("x"))},
		{"DEL in key", req(p, "a\x7fb", []byte("x"))},
		{"bad source", req(relay.Partition{Source: "Bad}{Source", Index: 0}, "k", []byte("x"))},
		{"empty source", req(relay.Partition{Source: "", Index: 0}, "k", []byte("x"))},
		{"negative partition", req(relay.Partition{Source: p.Source, Index: -1}, "k", []byte("x"))},
	}
	for _, b := range bad {
		_, err := s.Append(t.Context(), b.r)
		wantCode(t, "Append with "+b.name, err, relay.CodeInvalid)
	}
	neg := req(p, "k", []byte("x"))
	neg.Retention = -time.Second
	_, err := s.Append(t.Context(), neg)
	wantCode(t, "Append with negative retention", err, relay.CodeInvalid)
	neg = req(p, "k", []byte("x"))
	neg.MaxLen = -1
	_, err = s.Append(t.Context(), neg)
	wantCode(t, "Append with negative max length", err, relay.CodeInvalid)
	neg = req(p, "k", []byte("x"))
	neg.DedupeWindow = -time.Second
	_, err = s.Append(t.Context(), neg)
	wantCode(t, "Append with negative window", err, relay.CodeInvalid)

	if info := mustInfo(t, s, p); info.Length != 0 {
		t.Errorf("invalid appends stored %d entries", info.Length)
	}
	_, err = s.Range(t.Context(), relay.Partition{Source: "no{pe", Index: 0}, relay.ID{}, relay.MaxID, 1, false)
	wantCode(t, "Range with a bad source", err, relay.CodeInvalid)
	_, err = s.Lookup(t.Context(), p, "")
	wantCode(t, "Lookup with an empty id", err, relay.CodeInvalid)
	_, err = s.Read(t.Context(), map[relay.Partition]relay.ID{p: {}}, 1, -time.Second)
	wantCode(t, "Read with a negative block", err, relay.CodeInvalid)
	err = s.EnsureGroup(t.Context(), p, "", relay.ID{})
	wantCode(t, "EnsureGroup with an empty group", err, relay.CodeInvalid)
}

// Retention.

func testRetentionMaxLen(t *testing.T, s relay.Store) {
	p := part(t)
	const maxLen = 10
	var last relay.ID
	var all []relay.ID
	for i := range 300 {
		r := req(p, fmt.Sprint(i), []byte(fmt.Sprint(i)))
		r.MaxLen = maxLen
		last = mustAppend(t, s, r).ID
		all = append(all, last)
	}
	info := mustInfo(t, s, p)
	// MAXLEN ~ trims whole internal nodes (up to 100 entries on Redis): approximately.
	if info.Length < maxLen || info.Length > maxLen+100 {
		t.Errorf("after 300 appends with MaxLen %d: length %d, want %d..%d", maxLen, info.Length, maxLen, maxLen+100)
	}
	if info.Last != last || info.LastGenerated != last {
		t.Errorf("Info = %+v, want last %s", info, last)
	}
	// MaxDeleted is zero when the backend cannot tell, else just before the retained history:
	// at or after the last trimmed entry (the OUT_OF_RANGE boundary: a cursor before it lost
	// entries, one at it lost none) and before the first retained one.
	if !info.MaxDeleted.IsZero() && !info.MaxDeleted.Less(info.First) {
		t.Errorf("Info = %+v: MaxDeleted not before First", info)
	}
	i := slices.Index(all, info.First)
	if i < 1 {
		t.Fatalf("first retained entry %s: not one appended after the first (index %d)", info.First, i)
	}
	if lastTrimmed := all[i-1]; !info.MaxDeleted.IsZero() && info.MaxDeleted.Less(lastTrimmed) {
		t.Errorf("Info = %+v: MaxDeleted before the last trimmed entry %s", info, lastTrimmed)
	}
}

func testRetentionMinID(t *testing.T, s relay.Store) {
	p := part(t)
	old := appendN(t, s, p, "old", 250)
	time.Sleep(50 * time.Millisecond)
	r := req(p, "new", []byte("new"))
	r.Retention = 20 * time.Millisecond
	res := mustAppend(t, s, r)
	info := mustInfo(t, s, p)
	// MINID ~ trims whole internal nodes whose entries are all older than now-Retention.
	if info.Length >= int64(len(old))+1 {
		t.Errorf("nothing trimmed: length %d", info.Length)
	}
	if info.Length > 101 {
		t.Errorf("length %d after MINID trim, want at most 101", info.Length)
	}
	if info.Last != res.ID || !old[0].Less(info.First) {
		t.Errorf("Info = %+v, want first after %s and last %s", info, old[0], res.ID)
	}
	// A retention longer than the stream's age trims nothing.
	r = req(p, "new2", []byte("new2"))
	r.Retention = time.Hour
	mustAppend(t, s, r)
	if got := mustInfo(t, s, p).Length; got != info.Length+1 {
		t.Errorf("length %d after an append with 1h retention, want %d", got, info.Length+1)
	}
}

func testRangeReverseBounds(t *testing.T, s relay.Store) {
	p := part(t)
	all := appendN(t, s, p, "r", 10)
	check := func(name string, got []relay.Entry, want ...relay.ID) {
		t.Helper()
		if !slices.Equal(ids(got), want) {
			t.Errorf("%s: got %v, want %v", name, ids(got), want)
		}
	}
	check("bounds", mustRange(t, s, p, all[2], all[6], 0, false), all[2:7]...)
	check("bounds count", mustRange(t, s, p, all[2], all[6], 2, false), all[2], all[3])
	check("reverse bounds count", mustRange(t, s, p, all[2], all[6], 2, true), all[6], all[5])
	check("reverse all count", mustRange(t, s, p, relay.ID{}, relay.MaxID, 3, true), all[9], all[8], all[7])
	check("between ids", mustRange(t, s, p, all[3].Next(), all[5].Prev(), 0, false), all[4])
	check("from time", mustRange(t, s, p, relay.IDFromTime(all[9].Time().Add(time.Millisecond)), relay.MaxID, 0, false))
	check("start after end", mustRange(t, s, p, all[6], all[2], 0, false))
	check("missing stream", mustRange(t, s, part(t), relay.ID{}, relay.MaxID, 10, false))
	rev := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, true)
	for i, e := range rev {
		if e.ID != all[len(all)-1-i] {
			t.Fatalf("reverse range out of order at %d", i)
		}
	}
}

// Read.

func sources3(t *testing.T) []relay.Partition {
	src := newSource(t)
	return []relay.Partition{{Source: src, Index: 0}, {Source: src, Index: 1}, {Source: newSource(t), Index: 0}}
}

// A blocking read of one partition tells whether the entry at its after id was still
// retained once it was served: true while it is, never true once retention trimmed it (the
// shared tail reader then skips its gap check, gap.go).
func testReadAfterRetained(t *testing.T, s relay.Store) {
	p := part(t)
	all := appendN(t, s, p, "kept", 300)
	read := func() relay.ReadResult {
		t.Helper()
		res, err := s.Read(t.Context(), map[relay.Partition]relay.ID{p: all[10]}, 5, time.Second)
		if err != nil || len(res) != 1 || len(res[0].Entries) == 0 {
			t.Fatalf("Read after %s = %+v, %v", all[10], res, err)
		}
		return res[0]
	}
	if rr := read(); !rr.AfterRetained || rr.Entries[0].ID != all[11] {
		t.Errorf("Read after a retained entry: AfterRetained %v, first %s; want true, %s", rr.AfterRetained, rr.Entries[0].ID, all[11])
	}
	for i := range 300 { // trims the first 300 (MAXLEN ~ keeps at most about 110)
		r := req(p, fmt.Sprint("trim-", i), []byte("x"))
		r.MaxLen = 10
		mustAppend(t, s, r)
	}
	if first := mustInfo(t, s, p).First; !all[10].Less(first) {
		t.Fatalf("entry %s not trimmed (first retained %s)", all[10], first)
	}
	if rr := read(); rr.AfterRetained {
		t.Errorf("Read after a trimmed entry: AfterRetained true (first entry read %s)", rr.Entries[0].ID)
	}
}

func testReadBlocking(t *testing.T, s relay.Store) {
	ps := sources3(t)
	after := map[relay.Partition]relay.ID{}
	for _, p := range ps {
		after[p] = mustInfo(t, s, p).LastGenerated
	}
	type result struct {
		res []relay.ReadResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Blocks far longer than the test waits: only the append can end it in time.
		res, err := s.Read(t.Context(), after, 10, time.Minute)
		done <- result{res, err}
	}()
	// The positions are explicit ids, so the append is found whether the Read is already
	// blocking or not; the pause only makes the blocking case the likely one.
	time.Sleep(100 * time.Millisecond)
	id := mustAppend(t, s, req(ps[1], "blk", []byte("blk"))).ID
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("blocking Read did not return within 30s of an append")
	}
	if r.err != nil {
		t.Fatalf("Read: %v", r.err)
	}
	if len(r.res) != 1 || r.res[0].Partition != ps[1] || len(r.res[0].Entries) != 1 ||
		r.res[0].Entries[0].ID != id || string(r.res[0].Entries[0].Event) != "blk" {
		t.Fatalf("Read = %+v, want the one entry %s of %s", r.res, id, ps[1])
	}

	// Non-blocking reads across partitions, with count.
	appendN(t, s, ps[0], "a", 3)
	appendN(t, s, ps[2], "c", 2)
	res, err := s.Read(t.Context(), after, 2, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	got := map[relay.Partition]int{}
	for _, rr := range res {
		got[rr.Partition] = len(rr.Entries)
	}
	if len(res) != 3 || got[ps[0]] != 2 || got[ps[1]] != 1 || got[ps[2]] != 2 {
		t.Errorf("Read count 2: got %v, want 2, 1, 2 entries", got)
	}
	for i := 1; i < len(res); i++ {
		a, b := res[i-1].Partition, res[i].Partition
		if a.Source > b.Source || (a.Source == b.Source && a.Index >= b.Index) {
			t.Errorf("Read results not ordered by partition: %v then %v", a, b)
		}
	}
	// After everything: nothing, at once and after a short block.
	for _, rr := range res {
		after[rr.Partition] = mustInfo(t, s, rr.Partition).LastGenerated
	}
	if res, err := s.Read(t.Context(), after, 10, 0); err != nil || len(res) != 0 {
		t.Errorf("Read at the end = %v, %v; want nothing", res, err)
	}
	if res, err := s.Read(t.Context(), after, 10, 200*time.Millisecond); err != nil || len(res) != 0 {
		t.Errorf("blocking Read at the end = %v, %v; want nothing", res, err)
	}
}

func testReadTail(t *testing.T, s relay.Store) {
	p := part(t)
	before := appendN(t, s, p, "before", 3)
	done := make(chan []relay.ReadResult, 1)
	go func() {
		res, err := s.Read(t.Context(), map[relay.Partition]relay.ID{p: relay.MaxID}, 10, time.Minute)
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		done <- res
	}()
	// Whether the Read has issued XREAD $ yet cannot be observed: append until it returns.
	// An entry appended before it started is not returned; one appended after it is.
	after := map[relay.ID]bool{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	var res []relay.ReadResult
	for res == nil {
		after[mustAppend(t, s, req(p, fmt.Sprint("after", len(after)), []byte("after"))).ID] = true
		select {
		case res = <-done:
			if res == nil {
				t.Fatal("tail Read from MaxID returned nothing")
			}
		case <-tick.C:
		case <-deadline:
			t.Fatal("tail Read from MaxID returned nothing within 30s of appends")
		}
	}
	if len(res) != 1 || len(res[0].Entries) == 0 {
		t.Fatalf("tail Read from MaxID = %+v, want entries appended after it started", res)
	}
	for _, e := range res[0].Entries {
		if !after[e.ID] || slices.Contains(before, e.ID) {
			t.Fatalf("tail Read from MaxID returned %s, not one appended after it started", e.ID)
		}
	}
}

func testReadCancel(t *testing.T, s relay.Store) {
	p := part(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(ctx, map[relay.Partition]relay.ID{p: {}}, 10, 30*time.Second)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Read: got %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(20 * time.Second): // the Read blocks 30s
		t.Fatalf("Read did not return within 20s of its context being cancelled")
	}
	// A cancelled context is also honoured by the other calls.
	_, err := s.Append(ctx, req(p, "k", []byte("x")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: got %v, want context.Canceled", err)
	}
	_, err = s.ReadGroup(ctx, p, "g", "c", false, 1, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ReadGroup with a cancelled context: got %v, want context.Canceled", err)
	}
}

func testInfo(t *testing.T, s relay.Store) {
	if info := mustInfo(t, s, part(t)); info != (relay.StreamInfo{}) {
		t.Errorf("missing stream: Info = %+v, want zero", info)
	}
	empty := part(t)
	if err := s.EnsureGroup(t.Context(), empty, "g", relay.ID{}); err != nil {
		t.Fatalf("EnsureGroup: %v", err)
	}
	if info := mustInfo(t, s, empty); info != (relay.StreamInfo{}) {
		t.Errorf("empty stream: Info = %+v, want zero", info)
	}
	p := part(t)
	all := appendN(t, s, p, "i", 3)
	want := relay.StreamInfo{Length: 3, First: all[0], Last: all[2], LastGenerated: all[2]}
	info := mustInfo(t, s, p)
	// Added is zero when the backend cannot tell, else every entry ever appended.
	if info.Added != 0 && info.Added != 3 {
		t.Errorf("Info.Added = %d after 3 appends, want 3 (or 0: cannot tell)", info.Added)
	}
	info.Added = 0
	if info != want {
		t.Errorf("Info = %+v, want %+v", info, want)
	}
}

func testLookup(t *testing.T, s relay.Store) {
	p := part(t)
	res := mustAppend(t, s, req(p, "evt_look", []byte("payload")))
	e, err := s.Lookup(t.Context(), p, "evt_look")
	if err != nil || e.ID != res.ID || string(e.Event) != "payload" {
		t.Errorf("Lookup = %+v, %v; want %s", e, err, res.ID)
	}
	_, err = s.Lookup(t.Context(), p, "evt_missing")
	wantCode(t, "Lookup of an unknown id", err, relay.CodeNotFound)
	_, err = s.Lookup(t.Context(), part(t), "evt_look")
	wantCode(t, "Lookup in another partition", err, relay.CodeNotFound)
	// A marker whose entry was trimmed is not found either.
	r := req(p, "evt_trim", []byte("x"))
	mustAppend(t, s, r)
	for i := range 300 {
		r := req(p, fmt.Sprint("fill", i), nil)
		r.MaxLen = 1
		mustAppend(t, s, r)
	}
	if es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 1, false); len(es) == 1 && string(es[0].Event) == "x" {
		t.Skip("backend kept the entry after trimming")
	}
	_, err = s.Lookup(t.Context(), p, "evt_trim")
	wantCode(t, "Lookup of a trimmed entry", err, relay.CodeNotFound)
}

// Consumer groups.

func testEnsureGroup(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	appendN(t, s, p, "old", 2)
	for range 2 { // idempotent
		if err := s.EnsureGroup(ctx, p, "from-start", relay.ID{}); err != nil {
			t.Fatalf("EnsureGroup: %v", err)
		}
		if err := s.EnsureGroup(ctx, p, "from-now", relay.MaxID); err != nil {
			t.Fatalf("EnsureGroup: %v", err)
		}
	}
	newer := appendN(t, s, p, "new", 1)
	es, err := s.ReadGroup(ctx, p, "from-start", "c", false, 10, 0)
	if err != nil || len(es) != 3 {
		t.Errorf("group from the start read %d entries (%v), want 3", len(es), err)
	}
	es, err = s.ReadGroup(ctx, p, "from-now", "c", false, 10, 0)
	if err != nil || len(es) != 1 || es[0].ID != newer[0] {
		t.Errorf("group from now read %v (%v), want only %s", ids(es), err, newer[0])
	}
	// Re-ensuring does not move a group back.
	if err := s.EnsureGroup(ctx, p, "from-start", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.ReadGroup(ctx, p, "from-start", "c", false, 10, 0); len(es) != 0 {
		t.Errorf("EnsureGroup of an existing group rewound it: read %d entries", len(es))
	}
	// Starting after a given id.
	all := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false)
	if err := s.EnsureGroup(ctx, p, "after-first", all[0].ID); err != nil {
		t.Fatal(err)
	}
	es, _ = s.ReadGroup(ctx, p, "after-first", "c", false, 10, 0)
	if !slices.Equal(ids(es), ids(all[1:])) {
		t.Errorf("group after %s read %v, want %v", all[0].ID, ids(es), ids(all[1:]))
	}
	// A group on a stream that does not exist yet.
	q := part(t)
	if err := s.EnsureGroup(ctx, q, "g", relay.MaxID); err != nil {
		t.Fatalf("EnsureGroup on a new stream: %v", err)
	}
	id := mustAppend(t, s, req(q, "k", []byte("v"))).ID
	if es, _ := s.ReadGroup(ctx, q, "g", "c", false, 10, 0); len(es) != 1 || es[0].ID != id {
		t.Errorf("group created before the stream read %v, want %s", ids(es), id)
	}
}

func testReadGroup(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	_, err := s.ReadGroup(ctx, p, "nogroup", "c", false, 10, 0)
	wantCode(t, "ReadGroup of a missing group", err, relay.CodeNotFound)

	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "g", 3)
	es, err := s.ReadGroup(ctx, p, "g", "c1", false, 10, 0)
	if err != nil || !slices.Equal(ids(es), all) {
		t.Fatalf("ReadGroup new = %v, %v; want %v", ids(es), err, all)
	}
	for _, e := range es {
		if e.DeliveryCount != 1 {
			t.Errorf("first delivery of %s: count %d, want 1", e.ID, e.DeliveryCount)
		}
	}
	if string(es[1].Event) != "g-1" {
		t.Errorf("ReadGroup event %q, want g-1", es[1].Event)
	}
	if es, _ := s.ReadGroup(ctx, p, "g", "c1", false, 10, 0); len(es) != 0 {
		t.Errorf("second ReadGroup new read %d entries, want 0", len(es))
	}
	pend, err := s.ReadGroup(ctx, p, "g", "c1", true, 10, 0)
	if err != nil || !slices.Equal(ids(pend), all) {
		t.Fatalf("ReadGroup pending = %v, %v; want %v", ids(pend), err, all)
	}
	for _, e := range pend {
		if e.DeliveryCount != 2 {
			t.Errorf("pending re-read of %s: count %d, want 2", e.ID, e.DeliveryCount)
		}
	}
	if pend, _ := s.ReadGroup(ctx, p, "g", "c2", true, 10, 0); len(pend) != 0 {
		t.Errorf("another consumer's pending read returned %d entries, want 0", len(pend))
	}
	// A read with a count counts a delivery of the entries it returns, and of no other.
	pend, _ = s.ReadGroup(ctx, p, "g", "c1", true, 2, 0)
	if got := counts(pend); !slices.Equal(ids(pend), all[:2]) || !slices.Equal(got, []int64{3, 3}) {
		t.Errorf("pending read with count 2 = %v with counts %v, want %v with counts [3 3]", ids(pend), got, all[:2])
	}
	// Paging through the pending entries after an id.
	page, err := s.ReadPending(ctx, p, "g", "c1", all[0], 10)
	if got := counts(page); err != nil || !slices.Equal(ids(page), all[1:]) || !slices.Equal(got, []int64{4, 3}) {
		t.Errorf("ReadPending after %s = %v with counts %v, %v; want %v with counts [4 3]", all[0], ids(page), got, err, all[1:])
	}
	if page, _ := s.ReadPending(ctx, p, "g", "c1", all[len(all)-1], 10); len(page) != 0 {
		t.Errorf("ReadPending after the last pending entry = %v, want none", ids(page))
	}
	if page, _ := s.ReadPending(ctx, p, "g", "c1", relay.ID{}, 1); len(page) != 1 || page[0].ID != all[0] || page[0].DeliveryCount != 4 {
		t.Errorf("ReadPending from the start, count 1 = %+v, want [%s] with count 4", page, all[0])
	}
	// Page by page, one entry at a time, each entry counts one delivery: the pages after
	// it do not count it again (a member coming back pages through many pending entries;
	// counting them on every page would dead-letter the later ones).
	var paged []relay.Entry
	for after := (relay.ID{}); ; {
		page, err := s.ReadPending(ctx, p, "g", "c1", after, 1)
		if err != nil {
			t.Fatalf("ReadPending after %s: %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[0].ID
	}
	if got := counts(paged); !slices.Equal(ids(paged), all) || !slices.Equal(got, []int64{5, 5, 4}) {
		t.Errorf("paging one by one = %v with counts %v, want %v with counts [5 5 4]", ids(paged), got, all)
	}

	// Blocking read of new entries.
	done := make(chan []relay.Entry, 1)
	go func() {
		es, err := s.ReadGroup(ctx, p, "g", "c1", false, 10, time.Minute)
		if err != nil {
			t.Errorf("blocking ReadGroup: %v", err)
		}
		done <- es
	}()
	// ">" reads after the group's position, so the append is found whether the read is
	// already blocking or not; the pause only makes the blocking case the likely one.
	time.Sleep(100 * time.Millisecond)
	id := mustAppend(t, s, req(p, "late", []byte("late"))).ID
	select {
	case es := <-done:
		if len(es) != 1 || es[0].ID != id || es[0].DeliveryCount != 1 {
			t.Errorf("blocking ReadGroup = %+v, want %s", es, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("blocking ReadGroup did not return after an append")
	}
}

func testClaim(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	_, err := s.Claim(ctx, p, "nogroup", "c", 0, 10)
	wantCode(t, "Claim on a missing group", err, relay.CodeNotFound)
	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "c", 3)
	if _, err := s.ReadGroup(ctx, p, "g", "c1", false, 10, 0); err != nil {
		t.Fatal(err)
	}
	es, err := s.Claim(ctx, p, "g", "c2", time.Minute, 10)
	if err != nil || len(es) != 0 {
		t.Fatalf("Claim before idle = %v, %v; want nothing", ids(es), err)
	}
	time.Sleep(150 * time.Millisecond)
	es, err = s.Claim(ctx, p, "g", "c2", 100*time.Millisecond, 2)
	if err != nil || !slices.Equal(ids(es), all[:2]) {
		t.Fatalf("Claim = %v, %v; want %v", ids(es), err, all[:2])
	}
	for _, e := range es {
		if e.DeliveryCount != 2 || len(e.Event) == 0 {
			t.Errorf("claimed %s: count %d, event %q; want count 2", e.ID, e.DeliveryCount, e.Event)
		}
	}
	// The claimed entries now belong to c2.
	pend, _ := s.ReadGroup(ctx, p, "g", "c2", true, 10, 0)
	if !slices.Equal(ids(pend), all[:2]) {
		t.Errorf("c2 pending = %v, want %v", ids(pend), all[:2])
	}
	pend, _ = s.ReadGroup(ctx, p, "g", "c1", true, 10, 0)
	if !slices.Equal(ids(pend), all[2:]) {
		t.Errorf("c1 pending = %v, want %v", ids(pend), all[2:])
	}
	// Claimed again: the count keeps growing.
	time.Sleep(150 * time.Millisecond)
	es, err = s.Claim(ctx, p, "g", "c3", 100*time.Millisecond, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("second Claim = %v, %v; want 3 entries", ids(es), err)
	}
	for _, e := range es {
		// c2's entries: read, claimed, re-read, claimed = 4; c1's: read, re-read, claimed = 3.
		want := int64(3)
		if e.ID != all[2] {
			want = 4
		}
		if e.DeliveryCount != want {
			t.Errorf("second claim of %s: count %d, want %d", e.ID, e.DeliveryCount, want)
		}
	}
}

func testAck(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "a", 3)
	if _, err := s.ReadGroup(ctx, p, "g", "c", false, 2, 0); err != nil { // all[2] never delivered
		t.Fatal(err)
	}
	got, err := s.Ack(ctx, p, "g", []relay.ID{all[0], {Ms: 1, Seq: 1}, all[2], all[1]}, nil)
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if want := []bool{true, false, false, true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Ack = %v, want %v", got, want)
	}
	got, _ = s.Ack(ctx, p, "g", []relay.ID{all[0]}, nil)
	if len(got) != 1 || got[0] {
		t.Errorf("second Ack = %v, want [false]", got)
	}
	got, err = s.Ack(ctx, p, "other", []relay.ID{all[0]}, nil)
	if err != nil || len(got) != 1 || got[0] {
		t.Errorf("Ack in a missing group = %v, %v; want [false]", got, err)
	}
	if pend, _ := s.ReadGroup(ctx, p, "g", "c", true, 10, 0); len(pend) != 0 {
		t.Errorf("after acks %d entries still pending", len(pend))
	}
}

// testSettleAttempt: with delivery counts, Ack, Hold and DeadLetter settle only the delivery
// they name, and re-reading pending entries does not count a held one as a delivery.
// An entry read by c1 (delivery 1) and claimed by c2 after it went idle (delivery 2): c1's
// ack and hold of delivery 1 leave c2's delivery alone, and c2's settle it.
func testSettleAttempt(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "s", 2)
	if _, err := s.ReadGroup(ctx, p, "g", "c1", false, 10, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	es, err := s.Claim(ctx, p, "g", "c2", 100*time.Millisecond, 10)
	if err != nil || len(es) != 2 || es[0].DeliveryCount != 2 {
		t.Fatalf("Claim = %v, %v; want both entries at delivery 2", es, err)
	}
	stale, current := []int64{1, 1}, []int64{2, 2}
	if got, err := s.Hold(ctx, p, "g", all, stale, time.Now().Add(time.Hour)); err != nil || fmt.Sprint(got) != "[false false]" {
		t.Fatalf("Hold of delivery 1 = %v, %v; want [false false]", got, err)
	}
	if held, err := s.Held(ctx, p, "g", all, time.Now()); err != nil || fmt.Sprint(held) != "[false false]" {
		t.Fatalf("held after a stale Hold = %v, %v; want [false false]", held, err)
	}
	if got, err := s.Ack(ctx, p, "g", all, stale); err != nil || fmt.Sprint(got) != "[false false]" {
		t.Fatalf("Ack of delivery 1 = %v, %v; want [false false]", got, err)
	}
	if done, err := s.DeadLetter(ctx, p, "g", relay.Entry{ID: all[1], DeliveryCount: 1}, 1); err != nil || done {
		t.Fatalf("DeadLetter of delivery 1 = %v, %v; want false", done, err)
	}
	if n, err := s.PendingCount(ctx, p, "g", "c2"); err != nil || n != 2 {
		t.Fatalf("c2's pending after stale settles = %d, %v; want 2", n, err)
	}
	if got, err := s.Hold(ctx, p, "g", all[:1], current[:1], time.Now().Add(time.Hour)); err != nil || fmt.Sprint(got) != "[true]" {
		t.Fatalf("Hold of delivery 2 = %v, %v; want [true]", got, err)
	}
	// c2 comes back: its held entry is returned for paging only (count 0, no event, not
	// counted as a delivery), the other is read again as delivery 3.
	back, err := s.ReadPending(ctx, p, "g", "c2", relay.ID{}, 10)
	if err != nil || len(back) != 2 || back[0].ID != all[0] || back[0].DeliveryCount != 0 || back[0].Event != nil ||
		back[1].ID != all[1] || back[1].DeliveryCount != 3 || len(back[1].Event) == 0 {
		t.Fatalf("ReadPending with one entry held = %+v, %v; want %v held (count 0, no event), then %v at delivery 3", back, err, all[0], all[1])
	}
	if got, err := s.Ack(ctx, p, "g", all, []int64{2, 0}); err != nil || fmt.Sprint(got) != "[true true]" {
		t.Fatalf("Ack of delivery 2 and of any delivery = %v, %v; want [true true]", got, err)
	}
	if n, err := s.PendingCount(ctx, p, "g", "c2"); err != nil || n != 0 {
		t.Fatalf("c2's pending after its acks = %d, %v; want 0", n, err)
	}
}

// testGroupSettings: EnsureGroupSettings records the first settings of a group and returns
// them to every later call; GroupSettings reads them without recording anything.
func testGroupSettings(t *testing.T, s relay.Store) {
	ctx := t.Context()
	src := newSource(t)
	if _, ok, err := s.GroupSettings(ctx, src, "g"); err != nil || ok {
		t.Fatalf("GroupSettings of a group never created = %v, %v; want none", ok, err)
	}
	if _, ok, _ := s.GroupSettings(ctx, src, "g"); ok {
		t.Fatal("GroupSettings recorded the group")
	}
	first := relay.GroupSettings{Types: []string{"a.*"}, Filter: `event.type != ""`, AckDeadline: 30 * time.Second, MaxAttempts: 3}
	got, err := s.EnsureGroupSettings(ctx, src, "g", first, 0)
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Fatalf("EnsureGroupSettings of a new group = %+v, %v; want %+v", got, err, first)
	}
	other := relay.GroupSettings{AckDeadline: time.Minute, MaxAttempts: 5}
	if got, err := s.EnsureGroupSettings(ctx, src, "g", other, 0); err != nil || !reflect.DeepEqual(got, first) {
		t.Fatalf("EnsureGroupSettings of a recorded group = %+v, %v; want the first %+v", got, err, first)
	}
	if got, ok, err := s.GroupSettings(ctx, src, "g"); err != nil || !ok || !reflect.DeepEqual(got, first) {
		t.Fatalf("GroupSettings = %+v, %v, %v; want %+v", got, ok, err, first)
	}
}

func testDeadLetter(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	for _, g := range []string{"g", "g2"} {
		if err := s.EnsureGroup(ctx, p, g, relay.ID{}); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, p, "d", 3)
	es, err := s.ReadGroup(ctx, p, "g", "c", false, 10, 0)
	if err != nil || len(es) != 3 {
		t.Fatal(es, err)
	}
	if _, err := s.ReadGroup(ctx, p, "g2", "c", false, 10, 0); err != nil {
		t.Fatal(err)
	}
	victim := es[1]
	victim.DeliveryCount = 7
	if _, err := s.DeadLetter(ctx, p, "g", victim, 0); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	// Moved: acked in the group, present in the DLQ with its payload and count, still in the stream.
	pend, _ := s.ReadGroup(ctx, p, "g", "c", true, 10, 0)
	if !slices.Equal(ids(pend), []relay.ID{es[0].ID, es[2].ID}) {
		t.Errorf("pending after DeadLetter = %v, want %v", ids(pend), []relay.ID{es[0].ID, es[2].ID})
	}
	dl, err := s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 0, false)
	if err != nil || len(dl) != 1 {
		t.Fatalf("RangeDeadLetters = %v, %v; want 1", dl, err)
	}
	if string(dl[0].Event) != "d-1" || dl[0].DeliveryCount != 7 {
		t.Errorf("dead letter = %+v, want event d-1 with count 7", dl[0])
	}
	if n := mustInfo(t, s, p).Length; n != 3 {
		t.Errorf("stream length %d after DeadLetter, want 3 (dead-lettering does not delete)", n)
	}
	// Dead letters belong to the group: the other group has none, and still holds its own.
	if dl2, err := s.RangeDeadLetters(ctx, p, "g2", relay.ID{}, relay.MaxID, 0, false); err != nil || len(dl2) != 0 {
		t.Errorf("dead letters of the other group = %v, %v; want none", dl2, err)
	}
	if pend, _ := s.ReadGroup(ctx, p, "g2", "c", true, 10, 0); len(pend) != 3 {
		t.Errorf("the other group has %d pending, want 3 (untouched)", len(pend))
	}
	// Idempotent: dead-lettering it again (no longer pending) adds nothing.
	if _, err := s.DeadLetter(ctx, p, "g", victim, 0); err != nil {
		t.Fatalf("second DeadLetter: %v", err)
	}
	if _, err := s.DeadLetter(ctx, p, "g", es[0], 0); err != nil {
		t.Fatal(err)
	}
	dl, _ = s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 0, false)
	if len(dl) != 2 || string(dl[1].Event) != "d-0" || dl[1].DeliveryCount != 1 {
		t.Errorf("dead letters = %+v, want d-1 then d-0 (count 1)", dl)
	}
	rev, _ := s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 1, true)
	if len(rev) != 1 || rev[0].ID != dl[1].ID {
		t.Errorf("reverse RangeDeadLetters count 1 = %v, want %s", ids(rev), dl[1].ID)
	}
	if dl, err := s.RangeDeadLetters(ctx, part(t), "g", relay.ID{}, relay.MaxID, 0, false); err != nil || len(dl) != 0 {
		t.Errorf("RangeDeadLetters of a missing DLQ = %v, %v", dl, err)
	}
}

// testRedrive: a redriven dead letter goes back to its group alone, as a first delivery of
// its original entry; the stream does not grow and another group gets nothing.
func testRedrive(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	for _, g := range []string{"g", "other"} {
		if err := s.EnsureGroup(ctx, p, g, relay.ID{}); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, s, p, "x", 4)
	es, _ := s.ReadGroup(ctx, p, "g", "c", false, 10, 0)
	for _, e := range es {
		e.DeliveryCount = 5
		if _, err := s.DeadLetter(ctx, p, "g", e, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.ReadGroup(ctx, p, "other", "o", false, 10, 0); len(got) != 4 {
		t.Fatalf("the other group read %d, want 4", len(got))
	}
	if _, err := s.Ack(ctx, p, "other", ids(es), nil); err != nil {
		t.Fatal(err)
	}
	dl, _ := s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 0, false)
	if len(dl) != 4 {
		t.Fatalf("%d dead letters, want 4", len(dl))
	}
	if n, err := s.Redrive(ctx, p, "g", []relay.ID{}); err != nil || n != 0 {
		t.Errorf("Redrive of no ids = %d, %v; want 0", n, err)
	}
	if n, err := s.Redrive(ctx, p, "other", nil); err != nil || n != 0 {
		t.Errorf("Redrive of the other group (no dead letters) = %d, %v; want 0", n, err)
	}
	n, err := s.Redrive(ctx, p, "g", []relay.ID{dl[1].ID, {Ms: 1}})
	if err != nil || n != 1 {
		t.Fatalf("Redrive by id = %d, %v; want 1", n, err)
	}
	rest, _ := s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 0, false)
	if len(rest) != 3 || rest[0].ID != dl[0].ID || rest[1].ID != dl[2].ID {
		t.Errorf("dead letters after redriving one = %v", ids(rest))
	}
	// The group gets the original entry again through its claim path, as a first delivery.
	got, err := s.Claim(ctx, p, "g", "c2", time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != es[1].ID || string(got[0].Event) != "x-1" || got[0].DeliveryCount != 1 {
		t.Errorf("after Redrive the group claimed %+v, %v; want entry %s (x-1) with delivery count 1", got, err, es[1].ID)
	}
	n, err = s.Redrive(ctx, p, "g", nil)
	if err != nil || n != 3 {
		t.Fatalf("Redrive all = %d, %v; want 3", n, err)
	}
	if rest, _ := s.RangeDeadLetters(ctx, p, "g", relay.ID{}, relay.MaxID, 0, false); len(rest) != 0 {
		t.Errorf("%d dead letters left after Redrive all", len(rest))
	}
	got, _ = s.Claim(ctx, p, "g", "c2", time.Minute, 10)
	var events []string
	for _, e := range got {
		events = append(events, fmt.Sprintf("%s/%d", e.Event, e.DeliveryCount))
	}
	if fmt.Sprint(events) != "[x-0/1 x-2/1 x-3/1]" {
		t.Errorf("redriven events = %v, want [x-0/1 x-2/1 x-3/1]", events)
	}
	if n := mustInfo(t, s, p).Length; n != 4 {
		t.Errorf("stream length %d after redrive, want 4 (unchanged)", n)
	}
	for _, g := range []string{"g", "other"} {
		if more, _ := s.ReadGroup(ctx, p, g, "c3", false, 10, 0); len(more) != 0 {
			t.Errorf("group %s read %d new entries after redrive, want 0", g, len(more))
		}
	}
	if more, _ := s.Claim(ctx, p, "other", "o2", 0, 10); len(more) != 0 {
		t.Errorf("the other group claimed %d entries after redrive, want 0", len(more))
	}
	if n, err := s.Redrive(ctx, p, "g", nil); err != nil || n != 0 {
		t.Errorf("Redrive of an empty DLQ = %d, %v", n, err)
	}
}

func testGroupControl(t *testing.T, s relay.Store) {
	gc := s
	ctx := t.Context()
	p := part(t)
	_, err := gc.PendingCount(ctx, p, "nogroup", "c1")
	wantCode(t, "PendingCount of a missing group", err, relay.CodeNotFound)
	if got, err := gc.Release(ctx, p, "nogroup", []relay.ID{{Ms: 1}}, time.Hour); err != nil || len(got) != 1 || got[0] {
		t.Errorf("Release in a missing group = %v, %v; want [false]", got, err)
	}
	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "gc", 3)
	if _, err := s.ReadGroup(ctx, p, "g", "c1", false, 2, 0); err != nil {
		t.Fatal(err)
	}
	for consumer, want := range map[string]int64{"c1": 2, "c2": 0} {
		if n, err := gc.PendingCount(ctx, p, "g", consumer); err != nil || n != want {
			t.Errorf("PendingCount(%s) = %d, %v; want %d", consumer, n, err, want)
		}
	}
	got, err := gc.Release(ctx, p, "g", []relay.ID{all[0], all[2]}, time.Hour)
	if err != nil || fmt.Sprint(got) != "[true false]" {
		t.Fatalf("Release = %v, %v; want [true false]", got, err)
	}
	// Released: claimable at once by a consumer with a long deadline; owner and count kept until then.
	if n, _ := gc.PendingCount(ctx, p, "g", "c1"); n != 2 {
		t.Errorf("PendingCount(c1) after Release = %d, want 2", n)
	}
	es, err := s.Claim(ctx, p, "g", "c2", 30*time.Minute, 10)
	if err != nil || len(es) != 1 || es[0].ID != all[0] || es[0].DeliveryCount != 2 {
		t.Fatalf("Claim after Release = %+v, %v; want %s with count 2", es, err, all[0])
	}
	if n, _ := gc.PendingCount(ctx, p, "g", "c2"); n != 1 {
		t.Errorf("PendingCount(c2) after claim = %d, want 1", n)
	}
	// Unread: the entry c1 read but never delivered is claimable at once, and the next claim
	// counts as its first delivery.
	got, err = gc.Unread(ctx, p, "g", []relay.ID{all[1], all[2]})
	if err != nil || fmt.Sprint(got) != "[true false]" {
		t.Fatalf("Unread = %v, %v; want [true false]", got, err)
	}
	es, err = s.Claim(ctx, p, "g", "c2", 30*time.Minute, 10)
	if err != nil || len(es) != 1 || es[0].ID != all[1] || es[0].DeliveryCount != 1 {
		t.Fatalf("Claim after Unread = %+v, %v; want %s with count 1", es, err, all[1])
	}
}

// Batching and lifecycle.

func testBatching(t *testing.T, s relay.Store) {
	src := newSource(t)
	const n, parts = 1000, 4
	results := make([]relay.AppendResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			p := relay.Partition{Source: src, Index: i % parts}
			key := fmt.Sprintf("b-%d", i)
			results[i], errs[i] = s.Append(t.Context(), req(p, key, []byte(key)))
		})
	}
	close(start)
	wg.Wait()
	byID := map[relay.Partition]map[relay.ID]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Append %d: %v", i, errs[i])
		}
		if results[i].Duplicate {
			t.Fatalf("Append %d: unexpected duplicate", i)
		}
		p := relay.Partition{Source: src, Index: i % parts}
		if byID[p] == nil {
			byID[p] = map[relay.ID]string{}
		}
		if prev, ok := byID[p][results[i].ID]; ok {
			t.Fatalf("appends %s and b-%d got the same id %s", prev, i, results[i].ID)
		}
		byID[p][results[i].ID] = fmt.Sprintf("b-%d", i)
	}
	for pi := range parts {
		p := relay.Partition{Source: src, Index: pi}
		es := mustRange(t, s, p, relay.ID{}, relay.MaxID, 0, false)
		if len(es) != n/parts {
			t.Errorf("%s holds %d entries, want %d", p, len(es), n/parts)
		}
		for _, e := range es {
			if byID[p][e.ID] != string(e.Event) {
				t.Errorf("%s entry %s holds %q, but its append was answered for %q", p, e.ID, e.Event, byID[p][e.ID])
			}
		}
	}
	// Every answer is the real one: re-appending is a duplicate with the same id.
	for i := 0; i < n; i += 97 {
		p := relay.Partition{Source: src, Index: i % parts}
		res := mustAppend(t, s, req(p, fmt.Sprintf("b-%d", i), nil))
		if !res.Duplicate || res.ID != results[i].ID {
			t.Errorf("re-append b-%d = %+v, want duplicate of %s", i, res, results[i].ID)
		}
	}
}

func testClosed(t *testing.T, s relay.Store) {
	p := part(t)
	mustAppend(t, s, req(p, "k", []byte("v")))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	Unreachable(t, s, 10*time.Second) // a closed store answers at once; generous for a busy machine
}

func testStats(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	empty := relay.Partition{Source: p.Source, Index: 1}
	appended := appendN(t, s, p, "st", 5)
	for _, g := range []string{"b", "a", "c"} {
		if err := s.EnsureGroup(ctx, p, g, relay.ID{}); err != nil {
			t.Fatal(err)
		}
	}
	// Group a: 3 read, of which 1 acked and 1 dead-lettered: 1 pending, 2 not yet read.
	es, err := s.ReadGroup(ctx, p, "a", "c1", false, 3, 0)
	if err != nil || len(es) != 3 {
		t.Fatal(es, err)
	}
	if _, err := s.Ack(ctx, p, "a", []relay.ID{es[0].ID}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeadLetter(ctx, p, "a", es[1], 0); err != nil {
		t.Fatal(err)
	}
	// Group c: all 5 read and acknowledged: nothing left, no oldest.
	es, err = s.ReadGroup(ctx, p, "c", "c1", false, 10, 0)
	if err != nil || len(es) != 5 {
		t.Fatal(es, err)
	}
	if _, err := s.Ack(ctx, p, "c", ids(es), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Stats(ctx, []relay.Partition{p, empty})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Stats of 2 partitions = %d results", len(got))
	}
	if got[0].Partition != p || got[0].Length != 5 || got[0].Last != appended[4] {
		t.Errorf("stats[0] = %+v, want %v with length 5 and last %v", got[0], p, appended[4])
	}
	want := []relay.GroupStats{
		// a's oldest unfinished entry is its pending third; b's the first, never read.
		{Name: "a", Pending: 1, Consumers: 1, Lag: 2, DeadLetters: 1, Oldest: appended[2]},
		{Name: "b", Pending: 0, Consumers: 0, Lag: 5, DeadLetters: 0, Oldest: appended[0]},
		{Name: "c", Pending: 0, Consumers: 1, Lag: 0, DeadLetters: 0},
	}
	if len(got[0].Groups) != len(want) {
		t.Fatalf("groups = %+v, want %+v", got[0].Groups, want)
	}
	for i := range want {
		if got[0].Groups[i] != want[i] {
			t.Errorf("group %d = %+v, want %+v", i, got[0].Groups[i], want[i])
		}
	}
	if got[1].Partition != empty || got[1].Length != 0 || !got[1].Last.IsZero() || len(got[1].Groups) != 0 {
		t.Errorf("stats of an absent stream = %+v, want empty", got[1])
	}
	_, err = s.Stats(ctx, []relay.Partition{{Source: "bad name!", Index: 0}})
	wantCode(t, "Stats of an invalid partition", err, relay.CodeInvalid)
}

func testLease(t *testing.T, s relay.Store) {
	ctx := t.Context()
	name := "dest:" + newSource(t)
	steps := []struct {
		what  string
		owner string
		ttl   time.Duration
		want  bool
	}{
		{"a takes the free lease", "a", time.Minute, true},
		{"b cannot take a's lease", "b", time.Minute, false},
		{"a renews its lease", "a", time.Minute, true},
		{"b's release of a's lease does nothing", "b", 0, false},
		{"a still holds it", "a", time.Minute, true},
		{"a releases it", "a", 0, false},
		{"b takes the released lease", "b", 200 * time.Millisecond, true},
	}
	for _, st := range steps {
		got, err := s.Lease(ctx, name, st.owner, st.ttl)
		if err != nil || got != st.want {
			t.Fatalf("%s: Lease = %v, %v; want %v", st.what, got, err, st.want)
		}
	}
	// b's lease expires: a takes it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.Lease(ctx, name, "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's 200ms lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := s.Lease(ctx, "bad name!", "a", time.Minute)
	wantCode(t, "Lease with an invalid name", err, relay.CodeInvalid)
}

func testAckReadGroup(t *testing.T, s relay.Store) {
	ctx := t.Context()
	p := part(t)
	_, _, err := s.AckReadGroup(ctx, p, "nogroup", "c", []relay.ID{{Ms: 1}}, nil, 10)
	wantCode(t, "AckReadGroup of a missing group", err, relay.CodeNotFound)
	_, _, err = s.AckReadGroup(ctx, p, "g", "", nil, nil, 10)
	wantCode(t, "AckReadGroup without a consumer", err, relay.CodeInvalid)

	if err := s.EnsureGroup(ctx, p, "g", relay.ID{}); err != nil {
		t.Fatal(err)
	}
	all := appendN(t, s, p, "g", 3)
	first, err := s.ReadGroup(ctx, p, "g", "c", false, 2, 0)
	if err != nil || !slices.Equal(ids(first), all[:2]) {
		t.Fatalf("ReadGroup = %v, %v; want %v", ids(first), err, all[:2])
	}
	// The two delivered are acknowledged, an id never delivered is not pending, and the read
	// that goes with them returns the third as a first delivery.
	never := relay.ID{Ms: all[2].Ms + 1000}
	acked, es, err := s.AckReadGroup(ctx, p, "g", "c", []relay.ID{all[0], never, all[1]}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(acked, []bool{true, false, true}) {
		t.Errorf("AckReadGroup acked %v, want [true false true]", acked)
	}
	if !slices.Equal(ids(es), all[2:]) || !slices.Equal(counts(es), []int64{1}) {
		t.Errorf("AckReadGroup read %v with counts %v, want %v with counts [1]", ids(es), counts(es), all[2:])
	}
	if pend, err := s.ReadPending(ctx, p, "g", "c", relay.ID{}, 10); err != nil || !slices.Equal(ids(pend), all[2:]) {
		t.Errorf("pending after AckReadGroup = %v, %v; want %v (the acknowledged are settled)", ids(pend), err, all[2:])
	}
	// Acknowledged twice: not pending; nothing new to read.
	acked, es, err = s.AckReadGroup(ctx, p, "g", "c", []relay.ID{all[0]}, nil, 10)
	if err != nil || !slices.Equal(acked, []bool{false}) || len(es) != 0 {
		t.Errorf("AckReadGroup again = %v, %v, %v; want [false], no entries", acked, ids(es), err)
	}
	// Nothing to acknowledge: a plain read of what is new, up to count.
	more := appendN(t, s, p, "h", 3)
	acked, es, err = s.AckReadGroup(ctx, p, "g", "c", nil, nil, 2)
	if err != nil || len(acked) != 0 || !slices.Equal(ids(es), more[:2]) {
		t.Errorf("AckReadGroup with no ids = %v, %v, %v; want [], %v", acked, ids(es), err, more[:2])
	}
}
