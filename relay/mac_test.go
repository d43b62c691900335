package relay

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestKeyedMAC checks KeyedMAC against the published HMAC test vectors of RFC 4231 (test
// case 2, SHA-256) and RFC 2202 (test case 2, SHA-1), whole and in parts, appended after a
// prefix, and reused many times from several goroutines.
func TestKeyedMAC(t *testing.T) {
	const data = "what do ya want for nothing?"
	for _, tc := range []struct {
		name string
		m    *KeyedMAC
		want string
	}{
		{"sha256", NewKeyedMAC(sha256.New, []byte("Jefe")), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"sha1", NewKeyedMAC(sha1.New, []byte("Jefe")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hex.EncodeToString(tc.m.Sum(nil, []byte(data))); got != tc.want {
				t.Fatalf("whole: %s, want %s", got, tc.want)
			}
			if got := hex.EncodeToString(tc.m.Sum(nil, []byte("what do ya "), nil, []byte("want for nothing?"))); got != tc.want {
				t.Fatalf("in parts: %s, want %s", got, tc.want)
			}
			got := tc.m.Sum([]byte("prefix:"), []byte(data))
			if !bytes.HasPrefix(got, []byte("prefix:")) || hex.EncodeToString(got[7:]) != tc.want {
				t.Fatalf("after a prefix: %q", got)
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for range 200 {
						if got := hex.EncodeToString(tc.m.Sum(nil, []byte(data))); got != tc.want {
							t.Errorf("reused: %s, want %s", got, tc.want)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestKeyedMACCopiesKey: changing the caller's key afterwards does not change the MAC.
func TestKeyedMACCopiesKey(t *testing.T) {
	key := []byte("Jefe")
	m := NewKeyedMAC(sha256.New, key)
	copy(key, "XXXX")
	if got := hex.EncodeToString(m.Sum(nil, []byte("what do ya want for nothing?"))); got != "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Fatalf("got %s after the caller changed its key", got)
	}
}

func TestValidNames(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name          string
		source, group bool
	}{
		{"stripe", true, true},
		{"a", true, true},
		{"0", true, true},
		{"shop_1-eu", true, true},
		{long(63), true, true},
		{long(64), false, true},
		{long(128), false, true},
		{long(129), false, false},
		{"", false, false},
		{"_a", false, false},
		{"-a", false, false},
		{".a", false, false},
		{":a", false, false},
		{"Stripe", false, true},
		{"billing.workers:eu", false, true},
		{"a b", false, false},
		{"a/b", false, false},
		{"a\x00", false, false},
		{"é", false, false},
		{"a\n", false, false},
		{"{", false, false},
		{"@", false, false},
		{"[", false, false},
		{"`", false, false},
	} {
		if got := ValidSourceName(tc.name); got != tc.source {
			t.Errorf("ValidSourceName(%q) = %v, want %v", tc.name, got, tc.source)
		}
		if got := ValidGroupName(tc.name); got != tc.group {
			t.Errorf("ValidGroupName(%q) = %v, want %v", tc.name, got, tc.group)
		}
	}
}

// FuzzValidNames checks the name checks against the patterns they document, as regular
// expressions.
func FuzzValidNames(f *testing.F) {
	source := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	group := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	for _, s := range []string{"stripe", "Billing.eu:1", "", "-", "a\n", strings.Repeat("z", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidSourceName(s), source.MatchString(s); got != want {
			t.Fatalf("ValidSourceName(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := ValidGroupName(s), group.MatchString(s); got != want {
			t.Fatalf("ValidGroupName(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
