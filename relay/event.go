package relay

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// MaxEventIDLen bounds event ids (they become Redis key suffixes).
const MaxEventIDLen = 256

// NewUUIDv7 returns a random, time-ordered UUID (RFC 9562 version 7) for time t.
func NewUUIDv7(t time.Time) string {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint64(u[0:8], ms<<16)
	_, _ = rand.Read(u[6:])
	u[6] = 0x70 | (u[6] & 0x0f) // version 7
	u[8] = 0x80 | (u[8] & 0x3f) // variant 10
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// ValidateEventID checks an event id from a provider or producer: non-empty, at most
// MaxEventIDLen bytes, printable, no spaces.
func ValidateEventID(id string) error {
	if id == "" || len(id) > MaxEventIDLen {
		return Errorf(CodeInvalid, "event id must be 1 to %d bytes", MaxEventIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return Errorf(CodeInvalid, "event id must not contain spaces or control characters")
		}
	}
	return nil
}

// validateNewEventID is ValidateEventID for the id of an event being stored: also valid
// UTF-8 without U+FFFD, which is what decoding puts for bytes that are not UTF-8 (and for
// lone surrogate escapes in JSON): ids that differ only there would become one, and a
// distinct event would be answered duplicate and dropped. (Lookups take any id
// ValidateEventID takes, so that events stored before this check stay readable.)
func validateNewEventID(id string) error {
	if err := ValidateEventID(id); err != nil {
		return err
	}
	if !utf8.ValidString(id) || strings.ContainsRune(id, utf8.RuneError) {
		return Errorf(CodeInvalid, "event id must be valid UTF-8 without U+FFFD (the replacement of undecodable bytes)")
	}
	return nil
}

// PartitionOf returns the partition (0..n-1) of a partition key: FNV-1a 32 modulo n.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// PartitionKey returns the value that chooses the partition of an event: the configured
// partition_key ("header:Name" or a JSON path into the payload) when present, else the id.
func PartitionKey(cfg *SourceConfig, header func(string) string, body []byte, id string) string {
	if cfg.PartitionKey == "" {
		return id
	}
	if name, ok := strings.CutPrefix(cfg.PartitionKey, "header:"); ok {
		if v := header(name); v != "" {
			return v
		}
		return id
	}
	if v, ok := JSONLookup(body, cfg.PartitionKey); ok && v != "" {
		return v
	}
	return id
}

// EventType reads Event.type (field 3) from a serialized Event without decoding the rest.
func EventType(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 3 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// Glob matches s against pattern, where '*' matches any run of characters (dots included)
// and '?' exactly one.
func Glob(pattern, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// TypeFilter matches event types against glob patterns; an empty filter matches all.
type TypeFilter []string

// Match reports whether typ matches any pattern.
func (f TypeFilter) Match(typ string) bool {
	if len(f) == 0 {
		return true
	}
	for _, p := range f {
		if Glob(p, typ) {
			return true
		}
	}
	return false
}
