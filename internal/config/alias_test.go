package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventrelay/eventrelay/relay/verify"
)

// cfgLaughs returns levels lines of nested aliases, each expanding ten times the previous:
// "a0: &a0 [10 strings]", "a1: &a1 [*a0 ×10]", ... The last stands for 10^levels values.
// With repeat, the last level has that many aliases instead of ten.
func cfgLaughs(levels, repeat int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [" + strings.TrimSuffix(strings.Repeat(`"10.0.0.1",`, 10), ",") + "]\n")
	for i := 1; i < levels; i++ {
		n := 10
		if i == levels-1 && repeat > 0 {
			n = repeat
		}
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), n), ","))
	}
	return b.String()
}

// A few hundred bytes of nested aliases standing for 10^9 values are refused at once, with
// the key and line where the expansion went over the bound, before anything is built.
// Without the bound this test runs out of memory or time.
func TestConfigAliasBombRefused(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"nested lists", cfgLaughs(9, 0),
			// a4 = 10 × a3 (11,111 nodes each) is the first value over 100,000 nodes.
			[]string{"a4[9]: the file has more than 100000 YAML values once its aliases (*name) are expanded", "relay.yaml:5)"}},
		{"inside a known key", "log:\n  " + strings.ReplaceAll(strings.TrimSpace(cfgLaughs(9, 0)), "\n", "\n  ") + "\n",
			[]string{"log.a4[9]: the file has more than 100000 YAML values", "relay.yaml:6)"}},
		{"merge keys", mergeBomb(9),
			[]string{"m4: the file has more than 100000 YAML values", "relay.yaml:5)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(cfgWriteConfig(t, tt.yaml), nil, nil)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n"); n != 0 {
				t.Errorf("want one error, got %d lines:\n%v", n+1, err)
			}
		})
	}
}

// mergeBomb nests merge keys: each mapping merges the previous one ten times, which is
// exponential work for the merge resolution even though the keys are de-duplicated.
func mergeBomb(levels int) string {
	var b strings.Builder
	b.WriteString("m0: &m0 {k0: v, k1: v, k2: v, k3: v, k4: v, k5: v, k6: v, k7: v, k8: v, k9: v}\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "m%d: &m%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d,", i-1), 10), ","))
	}
	return b.String()
}

// Aliases that expand to fewer values than the bound are expanded as before: the file is
// read, and its unknown keys reported.
func TestConfigAliasesWithinBound(t *testing.T) {
	// 11 + 111 + 1,111 + 11,111 + 7 × 11,111 + keys: about 90,000 nodes.
	_, err := Load(cfgWriteConfig(t, cfgLaughs(5, 7)), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "a0: unknown key") || strings.Contains(err.Error(), "YAML values") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigAliasCycleRefused(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"log: &a [*a]\n", "log[0]: YAML alias *a refers to a value that contains it (%s:1)"},
		{"log: &a {level: info, <<: *a}\n", "log: YAML alias *a refers to a value that contains it (%s:1)"},
		{"sources:\n  - &s {name: a, secrets: [x], rate_limit: {burst: *s}}\n",
			"sources[0].rate_limit.burst: YAML alias *s refers to a value that contains it (%s:2)"},
	} {
		path := cfgWriteConfig(t, tt.yaml)
		_, err := Load(path, nil, nil)
		if want := fmt.Sprintf(tt.want, path); err == nil || err.Error() != want {
			t.Errorf("%q: err = %v, want %s", tt.yaml, err, want)
		}
	}
}

// Merge keys (<<) of a shared anchor still work for many entries.
func TestConfigMergeKeysManyEntries(t *testing.T) {
	var b strings.Builder
	b.WriteString("sources:\n  - &defaults { name: s0, provider: stripe, secrets: [x], tolerance: 2m, rate_limit: { rps: 10, burst: 20 } }\n")
	const n = 500
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  - { <<: *defaults, name: s%d }\n", i)
	}
	b.WriteString("  - { <<: [*defaults], name: last, tolerance: 1m }\n")
	cfg, err := Load(cfgWriteConfig(t, b.String()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != n+1 {
		t.Fatalf("%d sources", len(cfg.Sources))
	}
	for i, s := range cfg.Sources[:n] {
		if s.Name != fmt.Sprintf("s%d", i) || verify.OptionsOf(&s).Tolerance != 2*time.Minute || s.RateLimit.Burst != 20 ||
			string(verify.OptionsOf(&s).Secrets[0].Value) != "x" {
			t.Fatalf("sources[%d] = %+v", i, s)
		}
	}
	if last := cfg.Sources[n]; last.Name != "last" || verify.OptionsOf(&last).Tolerance != time.Minute || last.RateLimit.RPS != 10 {
		t.Errorf("last = %+v", last)
	}
}

func TestConfigFileTooLarge(t *testing.T) {
	body := strings.Repeat("# a comment line of the configuration file, repeated to make it large\n", (cfgMaxFileBytes/70)+1)
	path := cfgWriteConfig(t, "log: {level: info}\n"+body)
	_, err := Load(path, nil, nil)
	if want := "config file " + path + ": larger than 10 MiB"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %s...", err, want)
	}
	// Just under the bound is read.
	path = cfgWriteConfig(t, "log: {level: debug}\n"+body[:cfgMaxFileBytes-100])
	cfg, err := Load(path, nil, nil)
	if err != nil || cfg.Log.Level != "debug" {
		t.Fatalf("cfg %v, err %v", cfg, err)
	}
}
