package relay

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
)

// The cursor and the ack id are opaque to clients: base64url (no padding) of a small
// versioned protobuf message, encoded by hand so that the domain needs no extra generated
// types:
//
//	message Cursor   { uint32 version = 1; repeated Position positions = 2; bool dead_letters = 3;
//	                   string group = 4; }
//	message Position { string source = 1; uint32 partition = 2; uint64 ms = 3; uint64 seq = 4; }
//
// The ack id is described at EncodeAckID.
const codecVersion = 1

// maxOpaqueLen bounds the encoded size accepted from clients. A cursor over every partition of
// a source of MaxPartitions with a long name is about 130 KiB encoded.
const maxOpaqueLen = 256 << 10

// Cursor is a position in every stream partition a subscription reads: for each partition the
// id of the last entry delivered (or skipped), like Kafka offsets per partition.
type Cursor struct {
	Positions   map[Partition]ID
	DeadLetters bool
	// Group is, for a dead-letter cursor, the consumer group whose dead letters it reads
	// (dead letters belong to a group).
	Group string
}

// EncodeCursor returns the opaque form of c. Positions are sorted, so equal cursors encode
// equally. It is the subscriptions' incremental encoder (cursorEncoder) run once: one
// encoder for every cursor relayd issues.
func EncodeCursor(c Cursor) string {
	return newCursorEncoder(c.Positions, c.DeadLetters, c.Group).String()
}

// appendCursorKind appends the fields after the positions: dead_letters and group, for a
// dead-letter cursor.
func appendCursorKind(b []byte, deadLetters bool, group string) []byte {
	if !deadLetters {
		return b
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	if group != "" {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, group)
	}
	return b
}

// kindMismatch reports, as CodeInvalid naming field, a cursor c of another kind than a
// reading of deadLetters (of group's dead letters when set): a main-stream cursor for dead
// letters, or the dead letters of another group.
func (c Cursor) kindMismatch(field string, deadLetters bool, group string) error {
	kind := func(dead bool, g string) string {
		if !dead {
			return "main-stream"
		}
		return fmt.Sprintf("dead-letter (group %q)", g)
	}
	if c.DeadLetters != deadLetters || (deadLetters && c.Group != group) {
		return Errorf(CodeInvalid, "%s: the cursor is from a %s reading, not of this %s one", field, kind(c.DeadLetters, c.Group), kind(deadLetters, group))
	}
	return nil
}

func badCursor() error { return Errorf(CodeInvalid, "after_cursor: not a valid cursor") }

// DecodeCursor parses an opaque cursor. Any damage is a CodeInvalid error.
func DecodeCursor(s string) (Cursor, error) {
	if len(s) > maxOpaqueLen {
		return Cursor{}, badCursor()
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, badCursor()
	}
	c := Cursor{Positions: map[Partition]ID{}}
	version := uint64(0)
	err = walkFields(b, func(num protowire.Number, v uint64, bs []byte) error {
		switch num {
		case 1:
			version = v
		case 2:
			var p Partition
			var id ID
			if err := walkFields(bs, func(num protowire.Number, v uint64, bs []byte) error {
				switch num {
				case 1:
					p.Source = string(bs)
				case 2:
					if v >= MaxPartitions {
						return badCursor()
					}
					p.Index = int(v)
				case 3:
					id.Ms = v
				case 4:
					id.Seq = v
				}
				return nil
			}); err != nil {
				return err
			}
			if !ValidSourceName(p.Source) {
				return badCursor()
			}
			c.Positions[p] = id
		case 3:
			c.DeadLetters = v != 0
		case 4:
			c.Group = string(bs)
		}
		return nil
	})
	if err == nil && c.Group != "" && (!c.DeadLetters || !ValidGroupName(c.Group)) {
		err = badCursor()
	}
	if err != nil || version != codecVersion {
		return Cursor{}, badCursor()
	}
	return c, nil
}

// AckID identifies one group delivery: source, partition, entry id, group and the
// delivery's attempt. It is self-describing, so an Acknowledge may reach any relay replica,
// and authenticated: the encoding ends with an HMAC under a key every replica shares (see
// EncodeAckID).
type AckID struct {
	Partition Partition
	ID        ID
	Group     string
	// Deliveries is the entry's delivery count in the group when this delivery was made (its
	// attempt): the ack id settles that delivery only, not a later redelivery of the entry to
	// another member. 0 (ack ids issued before it was recorded): whichever delivery is pending.
	Deliveries int64
}

// Ack id wire format (version 2): base64url (no padding) of
//
//	message AckID { uint32 version = 1; string source = 2; uint32 partition = 3; uint64 ms = 4;
//	                uint64 seq = 5; string group = 6; uint64 deliveries = 7; bytes mac = 8; }
//
// with the fields in that order and mac last: the first AckIDMACLen bytes of
// HMAC-SHA256(key, every byte before the mac field). Version 1 (no mac) is refused.
const (
	ackIDVersion = 2
	// AckIDMACLen is the length of an ack id's truncated HMAC-SHA256.
	AckIDMACLen = 16
	// AckKeyLen is the length of the ack-id key a store keeps (see Store.AckKey).
	AckKeyLen = 32
	// maxAckIDLen bounds the encoded ack id accepted from clients.
	maxAckIDLen = 1024
)

// ackMACTag is the tag and length prefix of the mac field (field 8, length-delimited, 16 bytes).
var ackMACTag = []byte{8<<3 | 2, AckIDMACLen}

// ackMACs is the KeyedMAC of the last ack-id key used: a process has one (its store's), so
// nearly every call finds it here.
var ackMACs atomic.Pointer[KeyedMAC]

// ackMAC appends the mac of body under key to dst.
func ackMAC(dst, key, body []byte) []byte {
	m := ackMACs.Load()
	if m == nil || !m.keyIs(key) {
		m = NewKeyedMAC(sha256.New, key)
		ackMACs.Store(m)
	}
	return m.Sum(dst, body)[:len(dst)+AckIDMACLen]
}

// EncodeAckID returns the opaque, authenticated form of a under key.
func EncodeAckID(a AckID, key []byte) string {
	b := protowire.AppendTag(make([]byte, 0, 64+len(a.Partition.Source)+len(a.Group)), 1, protowire.VarintType)
	b = protowire.AppendVarint(b, ackIDVersion)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, a.Partition.Source)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(a.Partition.Index))
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, a.ID.Ms)
	b = protowire.AppendTag(b, 5, protowire.VarintType)
	b = protowire.AppendVarint(b, a.ID.Seq)
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendString(b, a.Group)
	if a.Deliveries > 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.Deliveries))
	}
	n := len(b)
	b = append(b, ackMACTag...)
	b = ackMAC(b, key, b[:n])
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeAckID parses an opaque ack id and checks its HMAC under key; ok is false for
// anything malformed, of another version, or not issued under key (forged or altered).
func DecodeAckID(s string, key []byte) (a AckID, ok bool) {
	if len(s) > maxAckIDLen || len(key) == 0 {
		return AckID{}, false
	}
	// Strict and without line breaks (which the decoder would skip): one ack id, one spelling.
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || strings.ContainsAny(s, "\r\n") || len(b) < len(ackMACTag)+AckIDMACLen {
		return AckID{}, false
	}
	body, tag, mac := b[:len(b)-AckIDMACLen-2], b[len(b)-AckIDMACLen-2:len(b)-AckIDMACLen], b[len(b)-AckIDMACLen:]
	if !bytes.Equal(tag, ackMACTag) || !hmac.Equal(mac, ackMAC(make([]byte, 0, sha256.Size), key, body)) {
		return AckID{}, false
	}
	version := uint64(0)
	err = walkFields(body, func(num protowire.Number, v uint64, bs []byte) error {
		switch num {
		case 1:
			version = v
		case 2:
			a.Partition.Source = string(bs)
		case 3:
			if v >= MaxPartitions {
				return badCursor()
			}
			a.Partition.Index = int(v)
		case 4:
			a.ID.Ms = v
		case 5:
			a.ID.Seq = v
		case 6:
			a.Group = string(bs)
		case 7:
			if v > math.MaxInt64 {
				return badCursor()
			}
			a.Deliveries = int64(v)
		default:
			return badCursor() // mac only last; nothing else is ever issued
		}
		return nil
	})
	if err != nil || version != ackIDVersion || !ValidSourceName(a.Partition.Source) || !ValidGroupName(a.Group) {
		return AckID{}, false
	}
	return a, true
}

// walkFields calls fn for every field of a protobuf message: v for varints, bs for
// length-delimited fields. Other wire types are skipped; malformed input is an error.
func walkFields(b []byte, fn func(num protowire.Number, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return badCursor()
		}
		b = b[n:]
		var v uint64
		var bs []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			bs, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return badCursor()
		}
		b = b[n:]
		if err := fn(num, v, bs); err != nil {
			return err
		}
	}
	return nil
}
