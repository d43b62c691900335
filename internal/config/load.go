package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
	"go.yaml.in/yaml/v3"

	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/push"
	"github.com/eventrelay/eventrelay/relay/verify"
)

// How Load works. Three koanf layers are merged in order: the file (read by yamlFile, which
// keeps every scalar as written and notes the line of each key), the RELAY_* variables and
// the flags. The merged map is unmarshalled with mapstructure into document, whose field
// tags (`koanf:"..."`) are the key names; unknown keys are errors, and the decode hooks
// (loader.hook) parse durations, CIDRs, numbers, booleans and secrets with messages that
// never show a secret. The variables and flags a key accepts are derived from the same tags
// (schema below), so a key added to a struct with its tag is configurable everywhere.

// document is the shape of the file: Config's sections by their keys, and the entries of the
// lists, whose types belong to other packages.
type document struct {
	HTTP         *HTTPConfig      `koanf:"http"`
	GRPC         *GRPCConfig      `koanf:"grpc"`
	Admin        *AdminConfig     `koanf:"admin"`
	Redis        *RedisConfig     `koanf:"redis"`
	Auth         *AuthConfig      `koanf:"auth"`
	Log          *LogConfig       `koanf:"log"`
	Tracing      *TracingConfig   `koanf:"tracing"`
	Subscribe    *SubscribeConfig `koanf:"subscribe"`
	Sources      []sourceEntry    `koanf:"sources"`
	Destinations []push.Config    `koanf:"destinations"`
}

// sourceEntry is one element of sources: the domain's settings and relay/verify's provider
// options, side by side under the same keys.
type sourceEntry struct {
	relay.SourceConfig `koanf:",squash"`
	verify.Options     `koanf:",squash"`
}

// ---------------------------------------------------------------------------------------
// Schema: the keys, from the tags of document, which also define the RELAY_* variables and
// the flag paths.

type cfgKind int

const (
	cfgKString       cfgKind = iota // any scalar, as written
	cfgKPath                        // file path (tag option "path"); relative to the config file's directory when read from it
	cfgKBool                        // true/false
	cfgKInt                         // int or int64
	cfgKFloat                       // float64
	cfgKDuration                    // Go duration: "30s", "5m", "168h"
	cfgKPrefixes                    // list of CIDR prefixes or bare IPs
	cfgKStrings                     // list of strings
	cfgKSecret                      // one secret: string or {id, value}
	cfgKSecrets                     // list of secrets
	cfgKSecretString                // a secret value resolved to a string (tag option "secret": redis.url)
	cfgKStringMap                   // mapping of strings to strings (env and flags: "K=V,K2=V2")
	cfgKSection                     // a mapping of keys
	cfgKList                        // a list of named mappings (sources, auth.tokens, destinations)
)

var (
	durationType = reflect.TypeFor[time.Duration]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	secretType   = reflect.TypeFor[relay.Secret]()
)

// isList reports whether an environment/flag value of this kind is a comma-separated list.
func (k cfgKind) isList() bool {
	return k == cfgKPrefixes || k == cfgKStrings || k == cfgKSecrets || k == cfgKStringMap
}

// cfgKindOf classifies a tagged field.
func cfgKindOf(f reflect.StructField) cfgKind {
	_, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	t := f.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case opts == "path":
		return cfgKPath
	case opts == "secret":
		return cfgKSecretString
	case t == secretType:
		return cfgKSecret
	case t == reflect.SliceOf(secretType):
		return cfgKSecrets
	case t == reflect.SliceOf(prefixType):
		return cfgKPrefixes
	case t == durationType:
		return cfgKDuration
	}
	switch t.Kind() {
	case reflect.Bool:
		return cfgKBool
	case reflect.Int, reflect.Int64:
		return cfgKInt
	case reflect.Float64:
		return cfgKFloat
	case reflect.Map:
		return cfgKStringMap
	case reflect.Struct:
		return cfgKSection
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return cfgKList
		}
		return cfgKStrings
	}
	return cfgKString
}

// cfgFields lists the tagged fields of struct type t by key, squashed fields included.
func cfgFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		switch {
		case opts == "squash":
			maps.Copy(out, cfgFields(f.Type))
		case name != "" && name != "-":
			out[name] = f
		}
	}
	return out
}

// cfgField finds the field at the dotted key path (list indexes allowed, "sources[2].header"),
// with the kind of what the path names (an element of a list of secrets is a secret).
func cfgField(path string) (reflect.StructField, cfgKind, bool) {
	t := reflect.TypeFor[document]()
	var f reflect.StructField
	kind := cfgKSection
	for seg := range strings.SplitSeq(path, ".") {
		name, _, indexed := strings.Cut(seg, "[")
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return f, 0, false
		}
		var ok bool
		if f, ok = cfgFields(t)[name]; !ok {
			return f, 0, false
		}
		t, kind = f.Type, cfgKindOf(f)
		if indexed && kind == cfgKSecrets {
			kind = cfgKSecret
		}
	}
	return f, kind, true
}

// cfgLeaf is a scalar (or list) key reachable by an environment variable or flag.
type cfgLeaf struct {
	path string // dotted, relative to its root (the config, a source, a token or a destination)
	kind cfgKind
}

// cfgLeavesOf flattens struct type t into its overridable leaves. The lists of named mappings
// are addressed by name separately; an entry's name itself cannot be overridden.
func cfgLeavesOf(prefix string, t reflect.Type) []cfgLeaf {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []cfgLeaf
	fields := cfgFields(t)
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		p := cfgJoinPath(prefix, name)
		switch k := cfgKindOf(fields[name]); k {
		case cfgKSection:
			out = append(out, cfgLeavesOf(p, fields[name].Type)...)
		case cfgKList:
		default:
			if name != "name" || prefix != "" {
				out = append(out, cfgLeaf{p, k})
			}
		}
	}
	return out
}

var (
	cfgLeaves       = cfgLeavesOf("", reflect.TypeFor[document]())
	cfgSourceLeaves = cfgLeavesOf("", reflect.TypeFor[sourceEntry]())
	cfgTokenLeaves  = cfgLeavesOf("", reflect.TypeFor[AuthToken]())
	cfgDestLeaves   = cfgLeavesOf("", reflect.TypeFor[push.Config]())
)

// cfgNamedList is a list of named mappings whose keys RELAY_<env><NAME>_<KEY> and flags
// <path>.<name>.<key> override (they cannot add an entry).
type cfgNamedList struct {
	env, path string // "SOURCES_", "sources"
	what      string // in messages: "sources"
	unknown   string // the message of a variable naming no key of an entry
	suggest   bool   // add a did-you-mean suggestion to that message
	leaves    []cfgLeaf
}

var cfgNamedLists = []cfgNamedList{
	{env: "SOURCES_", path: "sources", what: "sources", suggest: true, leaves: cfgSourceLeaves,
		unknown: "names no key of a configured source (RELAY_SOURCES_<NAME>_<KEY> overrides a key of a source of the config file; it cannot add a source)"},
	{env: "AUTH_TOKENS_", path: "auth.tokens", what: "tokens", leaves: cfgTokenLeaves,
		unknown: "names no key of a configured auth token (RELAY_AUTH_TOKENS_<NAME>_<KEY> overrides token, sources, publish or groups of a token of the config file)"},
	{env: "DESTINATIONS_", path: "destinations", what: "destinations", suggest: true, leaves: cfgDestLeaves,
		unknown: "names no key of a configured destination (RELAY_DESTINATIONS_<NAME>_<KEY> overrides a key of a destination of the config file; it cannot add one)"},
}

var cfgSections = []string{"HTTP", "GRPC", "ADMIN", "REDIS", "AUTH", "LOG", "TRACING", "SUBSCRIBE", "SOURCES", "DESTINATIONS"}

// cfgEnvName is the environment form of a dotted path or a name: upper case, every character
// other than a letter or digit written "_".
func cfgEnvName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

func cfgJoinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// ---------------------------------------------------------------------------------------
// The loader

type loader struct {
	k          *koanf.Koanf
	file, dir  string
	env        map[string]string
	where      map[string]string // key path → origin of its value: "relay.yaml:12", "RELAY_X", "flag x.y"
	referenced map[string]bool   // variables named by env: secrets
	pending    []cfgPendingEnv
	errs       []*FieldError
}

// cfgPendingEnv is a RELAY_* variable that names no configuration key; it is reported after
// decoding unless the file references it as an env: secret.
type cfgPendingEnv struct {
	name, msg string
}

func newLoader(environ []string) *loader {
	d := &loader{k: koanf.New("."), env: map[string]string{}, where: map[string]string{}, referenced: map[string]bool{}}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			d.env[k] = v
		}
	}
	return d
}

// load merges the layers and decodes them into cfg.
func (d *loader) load(path string, flags map[string]string, cfg *Config) error {
	if path != "" {
		data, err := readConfigFile(path)
		if err != nil {
			return err
		}
		d.file, d.dir = path, filepath.Dir(path)
		if err := d.k.Load(yamlFile{d, data}, nil); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		if len(d.errs) > 0 { // duplicate or non-string keys: the file's structure is unclear
			return nil
		}
	}
	d.applyEnv()
	d.applyFlags(flags)
	d.resolveSecretStrings()

	doc := document{HTTP: &cfg.HTTP, GRPC: &cfg.GRPC, Admin: &cfg.Admin, Redis: &cfg.Redis, Auth: &cfg.Auth,
		Log: &cfg.Log, Tracing: &cfg.Tracing, Subscribe: &cfg.Subscribe}
	err := d.k.UnmarshalWithConf("", &doc, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		TagName:     "koanf",
		DecodeHook:  d.hook,
		ErrorUnused: true,
		MatchName:   func(key, field string) bool { return key == field },
	}})
	d.decodeErrors(err)
	d.checkUnusedEnv()

	for _, e := range doc.Sources {
		s := e.SourceConfig
		opts := e.Options
		s.Verify = &opts
		cfg.Sources = append(cfg.Sources, s)
	}
	for i := range cfg.Auth.Tokens {
		cfg.Auth.Tokens[i].Token.ID = cfg.Auth.Tokens[i].Name
	}
	cfg.Destinations = doc.Destinations
	return nil
}

func (d *loader) errf(path, origin, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), Origin: origin})
}

// originOf finds the origin of path or of its closest parent.
func (d *loader) originOf(path string) string {
	for p := path; p != ""; {
		if o, ok := d.where[p]; ok {
			return o
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return ""
}

// setOrigin records that path and everything under it now come from origin.
func (d *loader) setOrigin(path, origin string) {
	for p := range d.where {
		if cfgRelatedPaths(p, path) && len(p) >= len(path) {
			delete(d.where, p)
		}
	}
	d.where[path] = origin
}

// ---------------------------------------------------------------------------------------
// The file layer

// cfgMaxFileBytes bounds the configuration file Load reads. A real one is a few kilobytes;
// the bound keeps a wrong path (a log, a device such as /dev/zero) from being read into
// memory whole.
const cfgMaxFileBytes = 10 << 20 // 10 MiB

// cfgMaxYAMLNodes bounds the number of YAML nodes (mappings, lists, keys and values) of the
// file once its aliases (*name) and merge keys (<<) are expanded, each alias counting as
// a copy of its anchor's value. A few hundred bytes of nested aliases can stand for
// billions of values ("billion laughs"), which would take minutes and gigabytes to build.
// A real configuration has a few hundred to a few thousand nodes, so 100,000 leaves ample
// room; the count is made before anything is built and stops as soon as it is exceeded.
const cfgMaxYAMLNodes = 100_000

// readConfigFile reads the file at path, refusing one larger than cfgMaxFileBytes.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, cfgMaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(data) > cfgMaxFileBytes {
		return nil, fmt.Errorf("config file %s: larger than %d MiB, which is far more than a configuration needs", path, cfgMaxFileBytes>>20)
	}
	return data, nil
}

// yamlFile is the koanf provider of the configuration file. Unlike a generic YAML parser it
// keeps every scalar as written (a string: "2.0" stays "2.0", "0x10" stays "0x10"), so that
// the file, the variables and the flags are all typed by the same decode hooks. It resolves
// aliases and merge keys (<<), reports duplicate and non-string keys, records the line of
// every key for messages, and makes relative paths (path keys and file: secrets) relative to
// the file's directory.
type yamlFile struct {
	d    *loader
	data []byte
}

func (y yamlFile) ReadBytes() ([]byte, error) { return y.data, nil }

func (y yamlFile) Read() (map[string]any, error) {
	root, err := parseConfigYAML(y.data)
	if err != nil {
		return nil, err
	}
	sz := yamlSizer{d: y.d, size: map[*yaml.Node]int{}, busy: map[*yaml.Node]bool{}}
	if _, ok := sz.sizeOf(root, ""); !ok {
		return nil, nil // reported in d.errs; nothing of the file is used
	}
	m, _ := y.d.fromNode(root, "").(map[string]any)
	return m, nil
}

func parseConfigYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // empty file
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: only one YAML document is allowed", extra.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		root = root.Content[0]
	}
	if root = yamlDeref(root); yamlIsNull(root) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of sections (http:, grpc:, sources:, ...)", root.Line)
	}
	return root, nil
}

func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// yamlSizer measures what fromNode and pairs will visit: the nodes of the file with every
// alias expanded (merge keys included), before anything is built. Each distinct node is
// measured once, so the time is linear in the size of the file whatever the expansion.
type yamlSizer struct {
	d    *loader
	size map[*yaml.Node]int  // expanded size of a node already measured
	busy map[*yaml.Node]bool // nodes being measured: an alias to one of them is a cycle
}

// sizeOf returns the expanded size of n, at key path. When it exceeds cfgMaxYAMLNodes, or
// an alias refers to a value that contains it, it records the error, naming the key and
// the line of the alias or key at which the bound was exceeded, and returns false.
func (s *yamlSizer) sizeOf(n *yaml.Node, path string) (int, bool) {
	return s.sizeIn(n, path, false)
}

// sizeIn is sizeOf; merge says n is the value of a merge key, whose list elements are
// merged into the mapping at path.
func (s *yamlSizer) sizeIn(n *yaml.Node, path string, merge bool) (int, bool) {
	at := n // the alias, or the node itself: its line is where the value is used
	n = yamlDeref(n)
	if n == nil {
		return 0, true
	}
	if sz, ok := s.size[n]; ok {
		return sz, true
	}
	if s.busy[n] {
		s.d.errf(cfgPathOrTop(path), fmt.Sprintf("%s:%d", s.d.file, at.Line), "YAML alias *%s refers to a value that contains it", at.Value)
		return 0, false
	}
	s.busy[n] = true
	defer delete(s.busy, n)
	total := 1
	for i, c := range n.Content {
		cp, cmerge := path, false
		switch n.Kind {
		case yaml.SequenceNode:
			if !merge {
				cp = fmt.Sprintf("%s[%d]", path, i)
			}
		case yaml.MappingNode:
			switch k := n.Content[i&^1]; {
			case k.ShortTag() == "!!merge":
				cmerge = i%2 == 1
			case k.Kind == yaml.ScalarNode:
				cp = cfgJoinPath(path, k.Value)
			}
		}
		sz, ok := s.sizeIn(c, cp, cmerge)
		if !ok {
			return 0, false
		}
		if total += sz; total > cfgMaxYAMLNodes {
			s.d.errf(cfgPathOrTop(cp), fmt.Sprintf("%s:%d", s.d.file, c.Line),
				"the file has more than %d YAML values once its aliases (*name) are expanded; a configuration needs far fewer", cfgMaxYAMLNodes)
			return 0, false
		}
	}
	s.size[n] = total
	return total, true
}

// fromNode converts n, at key path, to koanf's form: maps, lists, strings and nil.
func (d *loader) fromNode(n *yaml.Node, path string) any {
	n = yamlDeref(n)
	switch {
	case n.Kind == yaml.MappingNode:
		m := map[string]any{}
		for _, p := range d.pairs(n, path) {
			kp := cfgJoinPath(path, p.key)
			d.where[kp] = fmt.Sprintf("%s:%d", d.file, p.kn.Line)
			m[p.key] = d.fromNode(p.v, kp)
		}
		return m
	case n.Kind == yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, e := range n.Content {
			ep := fmt.Sprintf("%s[%d]", path, i)
			d.where[ep] = fmt.Sprintf("%s:%d", d.file, yamlDeref(e).Line)
			l[i] = d.fromNode(e, ep)
		}
		return l
	case yamlIsNull(n):
		return nil
	}
	return d.relativeToFile(path, n.Value)
}

// relativeToFile makes a relative path of the file absolute: the value of a path key, or of a
// file: secret.
func (d *loader) relativeToFile(path, s string) string {
	_, kind, ok := cfgField(path)
	if parent, key, _ := cutLast(path); key == "value" { // {id, value} of a secret
		_, kind, ok = cfgField(parent)
		ok = ok && (kind == cfgKSecret || kind == cfgKSecrets)
		kind = cfgKSecret
	}
	if !ok {
		return s
	}
	switch {
	case kind == cfgKPath && s != "" && !filepath.IsAbs(s):
		return filepath.Join(d.dir, s)
	case kind == cfgKSecret || kind == cfgKSecretString:
		if name, ok := strings.CutPrefix(s, "file:"); ok && name != "" && !filepath.IsAbs(name) {
			return "file:" + filepath.Join(d.dir, name)
		}
	}
	return s
}

func cutLast(path string) (parent, key string, ok bool) {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return "", path, false
	}
	return path[:i], path[i+1:], true
}

type cfgPair struct {
	key   string
	kn, v *yaml.Node
}

// pairs lists the keys of mapping n, merge keys (<<) resolved, explicit keys first.
func (d *loader) pairs(n *yaml.Node, path string) []cfgPair {
	var out []cfgPair
	seen := map[string]bool{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			merged = append(merged, yamlMergeSources(v)...)
			continue
		}
		kp := cfgJoinPath(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errf(cfgJoinPath(path, "?"), fmt.Sprintf("%s:%d", d.file, k.Line), "keys must be strings")
		case seen[k.Value]:
			d.errf(kp, fmt.Sprintf("%s:%d", d.file, k.Line), "duplicate key")
		default:
			seen[k.Value] = true
			out = append(out, cfgPair{k.Value, k, v})
		}
	}
	for _, m := range merged {
		for _, p := range d.pairs(m, path) {
			if !seen[p.key] {
				seen[p.key] = true
				out = append(out, p)
			}
		}
	}
	return out
}

func yamlMergeSources(v *yaml.Node) []*yaml.Node {
	v = yamlDeref(v)
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, e := range v.Content {
			if e = yamlDeref(e); e.Kind == yaml.MappingNode {
				out = append(out, e)
			}
		}
		return out
	}
	return nil
}

// ---------------------------------------------------------------------------------------
// The RELAY_* and flag layers

// value is the koanf form of an environment or flag value for a key of kind k: a list of
// trimmed items for list kinds, a mapping for "Name=value" items, else the string as given.
func (d *loader) value(path string, k cfgKind, s, origin string) (any, bool) {
	if !k.isList() {
		return s, true
	}
	var items []any
	m := map[string]any{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if k != cfgKStringMap {
			items = append(items, item)
			continue
		}
		name, v, found := strings.Cut(item, "=")
		if !found || strings.TrimSpace(name) == "" {
			d.errf(path, origin, "must be Name=value items separated by commas")
			return nil, false
		}
		m[strings.TrimSpace(name)] = strings.TrimSpace(v)
	}
	if k == cfgKStringMap {
		return m, true
	}
	return items, true
}

// set sets the top-level leaf l to s.
func (d *loader) set(l cfgLeaf, s, origin string) {
	if v, ok := d.value(l.path, l.kind, s, origin); ok {
		_ = d.k.Set(l.path, v) // merging into a map never fails
		d.setOrigin(l.path, origin)
	}
}

// cfgNamedEntry is one element of a named list in the file.
type cfgNamedEntry struct {
	name  string
	index int
}

// entries lists the elements of the named list l that have a name.
func (d *loader) entries(l cfgNamedList) []cfgNamedEntry {
	list, _ := d.k.Get(l.path).([]any)
	var out []cfgNamedEntry
	for i, e := range list {
		if m, ok := e.(map[string]any); ok {
			if name, ok := m["name"].(string); ok {
				out = append(out, cfgNamedEntry{name, i})
			}
		}
	}
	return out
}

// setInEntry sets leaf of element i of the named list l to s.
func (d *loader) setInEntry(l cfgNamedList, i int, leaf cfgLeaf, s, origin string) {
	path := fmt.Sprintf("%s[%d].%s", l.path, i, leaf.path)
	v, ok := d.value(path, leaf.kind, s, origin)
	if !ok {
		return
	}
	list := d.k.Get(l.path).([]any) // a copy
	m := list[i].(map[string]any)
	segs := strings.Split(leaf.path, ".")
	for _, seg := range segs[:len(segs)-1] {
		sub, ok := m[seg].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[seg] = sub
		}
		m = sub
	}
	m[segs[len(segs)-1]] = v
	_ = d.k.Set(l.path, list)
	d.setOrigin(path, origin)
}

// cfgListTarget resolves the variable suffix rest ("ORDERS_EU_TOLERANCE") against the names of
// entries: the entries it addresses and the leaf. Several matching entries with different
// names (e.g. "a-b" and "a_b") are ambiguous.
func cfgListTarget(rest string, entries []cfgNamedEntry, fields []cfgLeaf) (idx []int, leaf cfgLeaf, names []string) {
	for _, e := range entries {
		prefix := cfgEnvName(e.name) + "_"
		if !strings.HasPrefix(rest, prefix) {
			continue
		}
		for _, l := range fields {
			if cfgEnvName(l.path) == rest[len(prefix):] {
				idx = append(idx, e.index)
				leaf = l
				if !slices.Contains(names, e.name) {
					names = append(names, e.name)
				}
			}
		}
	}
	return idx, leaf, names
}

// applyEnv applies the RELAY_* variables.
func (d *loader) applyEnv() {
	top := map[string]cfgLeaf{}
	for _, l := range cfgLeaves {
		top["RELAY_"+cfgEnvName(l.path)] = l
	}
	for _, name := range slices.Sorted(maps.Keys(d.env)) {
		if !strings.HasPrefix(name, "RELAY_") || cfgIgnoredEnv[name] {
			continue
		}
		value := d.env[name]
		if l, ok := top[name]; ok {
			d.set(l, value, name)
			continue
		}
		rest := strings.TrimPrefix(name, "RELAY_")
		i := slices.IndexFunc(cfgNamedLists, func(l cfgNamedList) bool { return strings.HasPrefix(rest, l.env) })
		if i < 0 {
			if cfgLooksLikeConfig(rest, top) {
				d.pending = append(d.pending, cfgPendingEnv{name, "unknown configuration variable" + d.envSuggestion(name)})
			}
			continue
		}
		l := cfgNamedLists[i]
		idx, leaf, matched := cfgListTarget(strings.TrimPrefix(rest, l.env), d.entries(l), l.leaves)
		switch {
		case len(matched) > 1:
			d.pending = append(d.pending, cfgPendingEnv{name, fmt.Sprintf("ambiguous: matches %s %q", l.what, matched)})
		case len(idx) > 0:
			for _, i := range idx {
				d.setInEntry(l, i, leaf, value, name)
			}
		default:
			msg := l.unknown
			if l.suggest {
				msg += d.envSuggestion(name)
			}
			d.pending = append(d.pending, cfgPendingEnv{name, msg})
		}
	}
}

// cfgLooksLikeConfig reports whether RELAY_<rest> looks meant as a configuration path: its
// first word is a section name or a typo of one, or the whole is a typo of a known path.
func cfgLooksLikeConfig(rest string, top map[string]cfgLeaf) bool {
	first, _, _ := strings.Cut(rest, "_")
	for _, s := range cfgSections {
		if first == s || (len(first) >= 3 && cfgLevenshtein(first, s) <= 1) {
			return true
		}
	}
	for k := range top {
		if cfgLevenshtein("RELAY_"+rest, k) <= 2 {
			return true
		}
	}
	return false
}

// envSuggestion proposes the closest known variable.
func (d *loader) envSuggestion(name string) string {
	var known []string
	for _, l := range cfgLeaves {
		known = append(known, "RELAY_"+cfgEnvName(l.path))
	}
	for _, l := range cfgNamedLists {
		if !l.suggest {
			continue
		}
		for _, e := range d.entries(l) {
			for _, leaf := range l.leaves {
				known = append(known, "RELAY_"+l.env+cfgEnvName(e.name)+"_"+cfgEnvName(leaf.path))
			}
		}
	}
	return cfgSuggest(name, known)
}

func (d *loader) checkUnusedEnv() {
	for _, p := range d.pending {
		if !d.referenced[p.name] { // else a secret of the file: env:RELAY_...
			d.errf(p.name, "", "%s", p.msg)
		}
	}
}

// applyFlags applies flags (dotted path → value). The entries of the named lists are
// addressed by name: "sources.orders.tolerance", "auth.tokens.ci.token".
func (d *loader) applyFlags(flags map[string]string) {
	for _, key := range slices.Sorted(maps.Keys(flags)) {
		value, origin := flags[key], "flag "+key
		if l, ok := cfgFindLeaf(cfgLeaves, key); ok {
			d.set(l, value, origin)
			continue
		}
		i := slices.IndexFunc(cfgNamedLists, func(l cfgNamedList) bool { return strings.HasPrefix(key, l.path+".") })
		if i < 0 {
			var known []string
			for _, l := range cfgLeaves {
				known = append(known, l.path)
			}
			d.errf("flag "+key, "", "unknown configuration key%s", cfgSuggest(key, known))
			continue
		}
		l, rest, found := cfgNamedLists[i], strings.TrimPrefix(key, cfgNamedLists[i].path+"."), false
		for _, e := range d.entries(l) {
			if sub, ok := strings.CutPrefix(rest, e.name+"."); ok {
				if leaf, ok := cfgFindLeaf(l.leaves, sub); ok {
					d.setInEntry(l, e.index, leaf, value, origin)
					found = true
				}
			}
		}
		if !found {
			d.errf("flag "+key, "", "names no key of a configured entry (use sources.<name>.<key>, auth.tokens.<name>.<key> or destinations.<name>.<key>)")
		}
	}
}

func cfgFindLeaf(ls []cfgLeaf, path string) (cfgLeaf, bool) {
	i := slices.IndexFunc(ls, func(l cfgLeaf) bool { return l.path == path })
	if i < 0 {
		return cfgLeaf{}, false
	}
	return ls[i], true
}

// ---------------------------------------------------------------------------------------
// Decoding: hooks and errors

// cfgProblems are the problems of one value, each at a key relative to it ("" for the value
// itself), in words that never show the value.
type cfgProblems []cfgProblem

type cfgProblem struct{ key, msg string }

func (p cfgProblems) Error() string { return p[0].msg }

func problem(format string, args ...any) cfgProblems {
	return cfgProblems{{"", fmt.Sprintf(format, args...)}}
}

// hook converts the strings of the layers to the types of document. Other input (mappings,
// lists, nil) goes through unchanged, and mapstructure reports a mismatch of shape.
func (d *loader) hook(from, to reflect.Type, data any) (any, error) {
	if to == secretType {
		return d.secret(data)
	}
	s, ok := data.(string)
	if !ok {
		if (from.Kind() == reflect.Map || from.Kind() == reflect.Slice) && scalarKind(to) {
			return nil, problem("must be a single value, not a %s", shapeName(from))
		}
		return data, nil
	}
	switch {
	case to == durationType:
		v, err := time.ParseDuration(s)
		if err != nil {
			return nil, problem("invalid duration %q (use a Go duration such as \"30s\", \"5m\" or \"168h\")", s)
		}
		if v < 0 {
			return nil, problem("must not be negative, got %s", s)
		}
		return v, nil
	case to == prefixType:
		p, err := cfgParsePrefix(s)
		if err != nil {
			return nil, problem("%v", err)
		}
		return p, nil
	}
	switch to.Kind() {
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
		return nil, problem("must be true or false, got %q", s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil {
			return nil, problem("must be an integer, got %q", s)
		}
		if to.Kind() == reflect.Int && n != int64(int(n)) {
			return nil, problem("out of range: %s", s)
		}
		return n, nil
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, problem("must be a number, got %q", s)
		}
		return x, nil
	}
	return data, nil
}

func scalarKind(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return t == prefixType
}

func shapeName(t reflect.Type) string {
	if t.Kind() == reflect.Map {
		return "mapping"
	}
	return "list"
}

// secret decodes one secret: a string (literal, env:NAME, file:/path) or {id, value}.
func (d *loader) secret(data any) (relay.Secret, error) {
	var sec relay.Secret
	spec, key := data, ""
	switch v := data.(type) {
	case []any:
		return sec, problem("must be a single value, not a list")
	case map[string]any:
		var probs cfgProblems
		for _, k := range slices.Sorted(maps.Keys(v)) {
			switch k {
			case "id":
				if sec.ID, _ = v[k].(string); sec.ID == "" && v[k] != nil {
					probs = append(probs, cfgProblem{"id", "must be a single value"})
				}
			case "value":
			default:
				probs = append(probs, cfgProblem{k, "unknown key" + cfgSuggest(k, []string{"id", "value"})})
			}
		}
		spec, key = v["value"], "value"
		if spec == nil {
			probs = append(probs, cfgProblem{"value", "required"})
		}
		if len(probs) > 0 {
			return sec, probs
		}
	}
	s, ok := spec.(string)
	if !ok {
		return sec, cfgProblems{{key, "must be a single value, not a " + shapeName(reflect.TypeOf(spec))}}
	}
	b, msg := d.resolveSecret(s)
	if msg != "" {
		return sec, cfgProblems{{key, msg}}
	}
	sec.Value = b
	return sec, nil
}

// resolveSecret resolves a literal, env:NAME or file:/path (relative paths of the file were
// made absolute by yamlFile). The message of a failure names the variable or file, never
// the value.
func (d *loader) resolveSecret(spec string) ([]byte, string) {
	if name, ok := strings.CutPrefix(spec, "env:"); ok {
		if name == "" {
			return nil, "env: needs a variable name, e.g. env:ORDERS_SECRET"
		}
		d.referenced[name] = true
		val, set := d.env[name]
		switch {
		case !set:
			return nil, fmt.Sprintf("env:%s is not set", name)
		case val == "":
			return nil, fmt.Sprintf("env:%s is empty", name)
		}
		return []byte(val), ""
	}
	if name, ok := strings.CutPrefix(spec, "file:"); ok {
		if name == "" {
			return nil, "file: needs a path, e.g. file:/run/secrets/orders"
		}
		data, err := os.ReadFile(name)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Sprintf("file:%s cannot be read: %v", name, err)
		}
		if bytes.HasSuffix(data, []byte("\r\n")) {
			data = data[:len(data)-2]
		} else {
			data = bytes.TrimSuffix(data, []byte("\n"))
		}
		if len(data) == 0 {
			return nil, fmt.Sprintf("file:%s is empty", name)
		}
		return data, ""
	}
	if spec == "" {
		return nil, "empty secret"
	}
	return []byte(spec), ""
}

// resolveSecretStrings resolves the secret values kept as strings (redis.url) in place.
func (d *loader) resolveSecretStrings() {
	for _, l := range cfgLeaves {
		if s, ok := d.k.Get(l.path).(string); l.kind == cfgKSecretString && ok && s != "" {
			b, msg := d.resolveSecret(s)
			if msg != "" {
				d.errf(l.path, d.originOf(l.path), "%s", msg)
				b = nil
			}
			_ = d.k.Set(l.path, string(b))
		}
	}
}

// decodeErrors turns the errors of mapstructure into FieldErrors. Only the key path is taken
// from them, and the words from the hooks or from the shape of the key: mapstructure's own
// messages may quote a value.
func (d *loader) decodeErrors(err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			d.decodeErrors(e)
		}
		return
	}
	de, ok := err.(*mapstructure.DecodeError)
	if !ok {
		if inner := errors.Unwrap(err); inner != nil { // "decoding failed due to the following error(s)"
			d.decodeErrors(inner)
		} else {
			d.errf("(top level)", "", "cannot be decoded")
		}
		return
	}
	inner := de.Unwrap()
	var nested *mapstructure.DecodeError
	if _, joined := inner.(interface{ Unwrap() []error }); joined || errors.As(inner, &nested) {
		d.decodeErrors(inner)
		return
	}
	path := de.Name()
	if path == reflect.TypeFor[document]().String() {
		path = ""
	}
	var probs cfgProblems
	switch {
	case errors.As(inner, &probs):
		for _, p := range probs {
			pp := path
			if p.key != "" {
				pp = cfgJoinPath(path, p.key)
			}
			d.errf(pp, d.originOf(pp), "%s", p.msg)
		}
	case strings.HasPrefix(inner.Error(), "has invalid keys: "):
		d.unknownKeys(path)
	default:
		d.errf(cfgPathOrTop(path), d.originOf(path), "%s", shapeMessage(path))
	}
}

// unknownKeys reports the keys of the mapping at path that name no field.
func (d *loader) unknownKeys(path string) {
	var fields map[string]reflect.StructField
	if path == "" {
		fields = cfgFields(reflect.TypeFor[document]())
	} else if f, _, ok := cfgField(path); ok {
		t := f.Type
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		fields = cfgFields(t)
	}
	m := d.k.Raw()
	if path != "" {
		m = cfgLookup(m, path)
	}
	names := slices.Sorted(maps.Keys(fields))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if _, ok := fields[k]; !ok {
			kp := cfgJoinPath(path, k)
			d.errf(kp, d.originOf(kp), "unknown key%s", cfgSuggest(k, names))
		}
	}
}

// cfgLookup returns the mapping at path ("sources[2].rate_limit") in m.
func cfgLookup(m map[string]any, path string) map[string]any {
	var cur any = m
	for seg := range strings.SplitSeq(path, ".") {
		name, idx, indexed := strings.Cut(seg, "[")
		mm, _ := cur.(map[string]any)
		cur = mm[name]
		for indexed {
			var is string
			is, idx, _ = strings.Cut(idx, "]")
			i, _ := strconv.Atoi(is)
			l, _ := cur.([]any)
			if i >= len(l) {
				return nil
			}
			cur = l[i]
			idx, indexed = strings.CutPrefix(idx, "[")
		}
	}
	out, _ := cur.(map[string]any)
	return out
}

// shapeMessage says what the key at path must be, when its value has another shape.
func shapeMessage(path string) string {
	f, kind, ok := cfgField(path)
	switch {
	case path == "" || kind == cfgKSection || (ok && f.Type.Kind() == reflect.Struct && kind != cfgKSecret):
		return "must be a mapping of keys"
	case kind == cfgKStringMap:
		return "must be a mapping of header names to values"
	case kind == cfgKList || kind.isList():
		if strings.HasSuffix(path, "]") {
			return "must be a mapping of keys"
		}
		return "must be a list"
	}
	return "invalid value"
}

func cfgPathOrTop(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

// ---------------------------------------------------------------------------------------
// Small parsers

// cfgParsePrefix parses a CIDR prefix or a bare IP (a /32 or /128).
func cfgParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want e.g. 10.0.0.0/8, 2001:db8::/32 or a single IP)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid IP or CIDR %q (want e.g. 10.0.0.0/8, 2001:db8::/32 or a single IP)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// cfgSuggest returns ` (did you mean "x"?)` for the closest candidate, if close enough.
func cfgSuggest(got string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := cfgLevenshtein(strings.ToLower(got), strings.ToLower(c)); dist < bestD {
			best, bestD = c, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func cfgLevenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// cfgIsSourceKey reports whether key is a key of a source.
func cfgIsSourceKey(key string) bool {
	_, ok := cfgFields(reflect.TypeFor[sourceEntry]())[key]
	return ok
}
