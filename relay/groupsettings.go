package relay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GroupSettings are what belongs to a consumer group rather than to one of its members (Pub/Sub's
// rule: the filter belongs to the subscription): recorded in the store when the group is
// created, and taken by every member. A member that asks for another value is refused with
// CodeFailedPrecondition naming the setting and the group's value; a member that omits a
// setting takes the group's. Were they per member, members with different filters would
// acknowledge each other's events as filtered out, and a member with a short ack deadline
// would reclaim the work of members with a long one.
type GroupSettings struct {
	// Types are the type globs of the group's filter; empty: every type.
	Types []string
	// Filter is the group's filter expression (SubscribeRequest.Filter); "": none.
	Filter string
	// AckDeadline is how long a delivery may stay unacknowledged before it is redelivered.
	AckDeadline time.Duration
	// MaxAttempts is how many deliveries an entry gets before it is dead-lettered.
	MaxAttempts int
}

// DefaultMaxGroups is the default bound on the consumer groups of one source.
const DefaultMaxGroups = 64

// groupSettings reconciles the settings a group subscription asked for (zero: omitted) with
// the recorded ones of every source it reads, and sets req.Group and req.Types to the
// group's.
func (s *Service) groupSettings(ctx context.Context, st Store, sources []string, want GroupSettings, req *SubscribeRequest) error {
	// What is recorded for a new group: the request, defaults for what it omits.
	create := want
	if create.AckDeadline == 0 {
		create.AckDeadline = DefaultAckDeadline
	}
	if create.MaxAttempts == 0 {
		create.MaxAttempts = DefaultMaxAttempts
	}
	var agreed *GroupSettings
	agreedSource := ""
	agree := func(src string, got GroupSettings) error {
		if err := want.conflict(got, req.Group.Name, src); err != nil {
			return err
		}
		if agreed == nil {
			agreed, agreedSource = &got, src
			// The group's settings on the member's other sources, where it is new, are the
			// ones it has here: the member takes them for every source.
			create = got
		} else if !got.equal(*agreed) {
			return Errorf(CodeFailedPrecondition, "group %q has other settings on source %s (%s) than on source %s (%s): "+
				"a member of several sources needs the group's settings to be the same on each (use another group, or one source per group)",
				req.Group.Name, src, got, agreedSource, *agreed)
		}
		return nil
	}
	// First what is recorded already, so that a member refused creates the group nowhere.
	recorded := map[string]bool{}
	for _, src := range sources {
		got, ok, err := st.GroupSettings(ctx, src, req.Group.Name)
		if err != nil {
			return err
		}
		if ok {
			recorded[src] = true
			if err := agree(src, got); err != nil {
				return err
			}
		}
	}
	// Then the sources where the group is new (or was created meanwhile, by another member).
	for _, src := range sources {
		if recorded[src] {
			continue
		}
		got, err := st.EnsureGroupSettings(ctx, src, req.Group.Name, create, s.maxGroups(src))
		if err != nil {
			return err
		}
		if err := agree(src, got); err != nil {
			return err
		}
	}
	if agreed != nil {
		req.Types = TypeFilter(agreed.Types)
		req.Filter = agreed.Filter
		req.Group.AckDeadline, req.Group.MaxAttempts = agreed.AckDeadline, agreed.MaxAttempts
	}
	return nil
}

func (s *Service) maxGroups(source string) int {
	if src, ok := s.sources[source]; ok && src.Config.MaxGroups != 0 {
		return src.Config.MaxGroups
	}
	return DefaultMaxGroups
}

// equal reports whether r and g are the same settings (types, filter, ack deadline, max
// attempts), all of them set.
func (r GroupSettings) equal(g GroupSettings) bool {
	return slices.Equal(r.Types, g.Types) && r.Filter == g.Filter && r.AckDeadline == g.AckDeadline && r.MaxAttempts == g.MaxAttempts
}

// String describes the settings for an error message.
func (r GroupSettings) String() string {
	return fmt.Sprintf("types %s, filter %q, ack_deadline %s, max_delivery_attempts %d", typesString(r.Types), r.Filter, r.AckDeadline, r.MaxAttempts)
}

// conflict reports, as CodeFailedPrecondition, the first setting set in r (zero: omitted)
// that differs from the group's g.
func (r GroupSettings) conflict(g GroupSettings, group, source string) error {
	bad := func(setting, has, asked string) error {
		return Errorf(CodeFailedPrecondition, "group %q (source %s) has %s %s; this subscription asks for %s: settings belong to the group (omit %s to take the group's, or use another group)",
			group, source, setting, has, asked, setting)
	}
	if r.Types != nil && !slices.Equal(r.Types, g.Types) {
		return bad("types", typesString(g.Types), typesString(r.Types))
	}
	if r.Filter != "" && r.Filter != g.Filter {
		return bad("filter", fmt.Sprintf("%q", g.Filter), fmt.Sprintf("%q", r.Filter))
	}
	if r.AckDeadline != 0 && r.AckDeadline != g.AckDeadline {
		return bad("ack_deadline", g.AckDeadline.String(), r.AckDeadline.String())
	}
	if r.MaxAttempts != 0 && r.MaxAttempts != g.MaxAttempts {
		return bad("max_delivery_attempts", fmt.Sprint(g.MaxAttempts), fmt.Sprint(r.MaxAttempts))
	}
	return nil
}

// normalTypes sorts and deduplicates type globs; nil when there are none.
func normalTypes(t TypeFilter) []string {
	if len(t) == 0 {
		return nil
	}
	out := slices.Clone([]string(t))
	slices.Sort(out)
	return slices.Compact(out)
}

func typesString(t []string) string {
	if len(t) == 0 {
		return "[] (every type)"
	}
	return "[" + strings.Join(t, ", ") + "]"
}

// partitionSources returns the sources of parts, each once, in order.
func partitionSources(parts []Partition) []string {
	var out []string
	for _, p := range parts {
		if !slices.Contains(out, p.Source) {
			out = append(out, p.Source)
		}
	}
	return out
}
