package relay

import (
	"context"
	"sort"
)

// SourceStats describes a source's streams summed over its partitions (Service.Stats).
type SourceStats struct {
	Name       string
	Provider   string
	Partitions int
	// Length counts the entries retained.
	Length int64
	// DeadLetters counts the dead letters of all its groups.
	DeadLetters int64
	// Last is the id of its newest retained entry over all partitions (zero: none); Last.Time
	// is when it was appended.
	Last ID
	// Groups are its consumer groups by name, each summed over the partitions (Lag -1 when
	// unknown on any partition; Consumers the most on one partition).
	Groups []GroupStats
}

// Stats describes every configured source, in name order, from one Store.Stats call.
func (s *Service) Stats(ctx context.Context) ([]SourceStats, error) {
	var parts []Partition
	for _, name := range s.names {
		parts = append(parts, s.sources[name].Partitions()...)
	}
	ps, err := s.store.Stats(ctx, parts)
	if err != nil {
		return nil, err
	}
	out := make([]SourceStats, 0, len(s.names))
	idx := map[string]int{}
	for _, name := range s.names {
		src := s.sources[name]
		idx[name] = len(out)
		out = append(out, SourceStats{Name: name, Provider: src.Config.Provider, Partitions: src.Config.Partitions})
	}
	groups := make([]map[string]*GroupStats, len(out))
	for _, p := range ps {
		i := idx[p.Partition.Source]
		st := &out[i]
		st.Length += p.Length
		if st.Last.Less(p.Last) {
			st.Last = p.Last
		}
		if groups[i] == nil {
			groups[i] = map[string]*GroupStats{}
		}
		for _, g := range p.Groups {
			st.DeadLetters += g.DeadLetters
			sum := groups[i][g.Name]
			if sum == nil {
				sum = &GroupStats{Name: g.Name}
				groups[i][g.Name] = sum
			}
			sum.Pending += g.Pending
			sum.DeadLetters += g.DeadLetters
			sum.Consumers = max(sum.Consumers, g.Consumers)
			if !g.Oldest.IsZero() && (sum.Oldest.IsZero() || g.Oldest.Less(sum.Oldest)) {
				sum.Oldest = g.Oldest
			}
			if g.Lag < 0 || sum.Lag < 0 {
				sum.Lag = -1
			} else {
				sum.Lag += g.Lag
			}
		}
	}
	for i := range out {
		out[i].Groups = []GroupStats{}
		for _, g := range groups[i] {
			out[i].Groups = append(out[i].Groups, *g)
		}
		sort.Slice(out[i].Groups, func(a, b int) bool { return out[i].Groups[a].Name < out[i].Groups[b].Name })
	}
	return out, nil
}
