package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

type report struct {
	cfg     *config
	machine machine
	loadEnd string
	idle    *idleResult
	ingest  [2]*ingestResult // relayd, hand-written
	nostore *ingestResult    // hand-written without storing
	e2e     [2]*e2eResult
	fanout  [2]*fanoutResult
	trickle [2]*trickleResult
	replay  [2]*replayResult
	wrk     []*wrkResult
}

type row struct {
	what, relayd, baseline, ratio, target, met string
}

func verdict(ok bool, miss string) string {
	if ok {
		return "yes"
	}
	return "**no** (" + miss + ")"
}

func (r *report) rows() []row {
	var rows []row
	c := r.cfg
	if a, b := r.ingest[0], r.ingest[1]; a != nil && b != nil {
		q := a.reqPerSec / b.reqPerSec
		rows = append(rows,
			row{fmt.Sprintf("(a) ingest, %d connections, signed unique webhooks: req/s", c.conns),
				fmtRate(a.reqPerSec), fmtRate(b.reqPerSec), ratio(a.reqPerSec, b.reqPerSec), "≥ 1.3x baseline",
				verdict(q >= 1.3, fmt.Sprintf("%.0f%% short", (1.3-q)/1.3*100))},
			row{"(a) ingest latency p50 / p99", fmtDur(a.lat.pct(50)) + " / " + fmtDur(a.lat.pct(99)),
				fmtDur(b.lat.pct(50)) + " / " + fmtDur(b.lat.pct(99)), "", "", ""},
			row{"(a) acknowledged events missing from the stream", fmt.Sprintf("%d of %s", a.missing, fmtInt(int64(len(a.acked)))),
				fmt.Sprintf("%d of %s", b.missing, fmtInt(int64(len(b.acked)))), "", "0", verdict(a.missing == 0, fmt.Sprintf("%d missing", a.missing))},
			row{"(a) errors (transport or non-2xx)", fmtInt(a.errors), fmtInt(b.errors), "", "", ""},
		)
		if n := r.nostore; n != nil {
			rows = append(rows, row{"(a) reference: the hand-written receiver without its XADD (no storage at all): req/s",
				"–", fmtRate(n.reqPerSec), ratio(a.reqPerSec, n.reqPerSec), "", ""})
		}
		if a.cpu != nil && b.cpu != nil && a.total > 0 && b.total > 0 {
			us := func(d time.Duration, n int64) float64 { return float64(d.Microseconds()) / float64(n) }
			gen := us(a.cpu.harness, a.total)
			// A baseline inside the harness process shares its CPU time with the load
			// generator: its share is the harness's CPU per request less the generator's.
			recv := us(b.cpu.relayd, b.total)
			if !r.cfg.inProcess {
				gen = us(b.cpu.harness, b.total)
			} else {
				recv = us(b.cpu.harness, b.total) - gen
			}
			rel, rr, br := us(a.cpu.relayd, a.total), us(a.cpu.redis, a.total), us(b.cpu.redis, b.total)
			base := fmt.Sprintf("%.1f + %.1f", recv, br)
			if n := r.nostore; n != nil && n.cpu != nil && n.total > 0 {
				nrecv := us(n.cpu.relayd, n.total)
				if r.cfg.inProcess {
					nrecv = us(n.cpu.harness, n.total) - gen
				}
				base += fmt.Sprintf(" (without XADD: %.1f + 0)", nrecv)
			}
			rows = append(rows, row{"(a) CPU per request, µs: server + Redis (load generator)",
				fmt.Sprintf("%.1f + %.1f (%.1f)", rel, rr, gen), base, fmt.Sprintf("%.2fx the CPU", (rel+rr)/(recv+br)), "", ""})
		}
	}
	if a, b := r.e2e[0], r.e2e[1]; a != nil && b != nil {
		p99 := a.lat.pct(99)
		rows = append(rows,
			row{fmt.Sprintf("(b) end-to-end POST → Subscribe receipt at %.0f/s: p50 / p99 / max", a.rate),
				fmtDur(a.lat.pct(50)) + " / " + fmtDur(p99) + " / " + fmtDur(a.lat.pct(100)),
				fmtDur(b.lat.pct(50)) + " / " + fmtDur(b.lat.pct(99)) + " / " + fmtDur(b.lat.pct(100)),
				ratio(float64(p99), float64(b.lat.pct(99))) + " (p99)", "p99 ≤ 2 ms",
				verdict(p99 <= 2e6 && a.missing == 0, fmt.Sprintf("p99 %s, %d missing", fmtDur(p99), a.missing))},
			row{"(b) the POST's own answer: p50 / p99", fmtDur(a.post.pct(50)) + " / " + fmtDur(a.post.pct(99)),
				fmtDur(b.post.pct(50)) + " / " + fmtDur(b.post.pct(99)), "", "", ""},
			row{"(b) acknowledged / received", fmt.Sprintf("%d / %d", a.acked, a.recv), fmt.Sprintf("%d / %d", b.acked, b.recv), "", "", ""},
		)
	}
	if a, b := r.fanout[0], r.fanout[1]; a != nil && b != nil {
		rows = append(rows, row{fmt.Sprintf("(c) fan-out to %d tail subscribers: deliveries/s", a.subs),
			fmtRate(a.perSec) + fmt.Sprintf(" (%d ended)", a.ended), fmtRate(b.perSec), ratio(a.perSec, b.perSec), "≥ 500,000",
			verdict(a.perSec >= 500000 && a.ended == 0, fmt.Sprintf("%.0f%% short", (500000-a.perSec)/5000))})
		if a.cpu != nil && b.cpu != nil && a.deliveries > 0 && b.deliveries > 0 {
			rows = append(rows, row{"(c) CPU per delivery, µs: server + Redis (subscribers and producer)",
				fmt.Sprintf("%s + %s (%s)", perOp(a.cpu.relayd, a.deliveries), perOp(a.cpu.redis, a.deliveries), perOp(a.cpu.harness, a.deliveries)),
				fmt.Sprintf("%s (readers and producer) + %s", perOp(b.cpu.harness, b.deliveries), perOp(b.cpu.redis, b.deliveries)), "", "", ""})
		}
	}
	if a, b := r.trickle[0], r.trickle[1]; a != nil && b != nil && a.deliveries > 0 && b.deliveries > 0 {
		per := float64(a.cpu.relayd.Nanoseconds()) / float64(a.deliveries) / 1e3
		rows = append(rows,
			row{fmt.Sprintf("(f) trickle: %.0f webhooks/s over HTTP to %d tail subscribers (%d connections): deliveries received", a.rate, a.subs, a.conns),
				fmt.Sprintf("%s of %s (%d ended)", fmtInt(a.deliveries), fmtInt(a.acked*int64(a.subs)), a.ended),
				fmt.Sprintf("%s of %s", fmtInt(b.deliveries), fmtInt(b.acked*int64(b.subs))), "", "all", verdict(a.deliveries == a.acked*int64(a.subs) && a.ended == 0, "lost")},
			row{"(f) CPU per delivery, µs (ingest included): server + Redis (subscribers and load)",
				fmt.Sprintf("%s + %s (%s)", perOp(a.cpu.relayd, a.deliveries), perOp(a.cpu.redis, a.deliveries), perOp(a.cpu.harness, a.deliveries)),
				fmt.Sprintf("%s (receiver) + %s (%s readers and load)", perOp(b.cpu.relayd, b.deliveries), perOp(b.cpu.redis, b.deliveries), perOp(b.cpu.harness, b.deliveries)),
				"", "relayd ≤ 3", verdict(per <= 3, fmt.Sprintf("%.1f µs", per))})
	}
	if a, b := r.replay[0], r.replay[1]; a != nil && b != nil {
		rows = append(rows, row{fmt.Sprintf("(d) replay %s events from history to one subscriber: events/s", fmtInt(int64(c.replayEvents))),
			fmtRate(a.perSec), fmtRate(b.perSec), ratio(a.perSec, b.perSec), "≥ 300,000",
			verdict(a.perSec >= 300000, fmt.Sprintf("%.0f%% short", (300000-a.perSec)/3000))})
		if a.cpu != nil && b.cpu != nil && a.events > 0 && b.events > 0 {
			rows = append(rows, row{"(d) CPU per event, µs: server + Redis (subscriber)",
				fmt.Sprintf("%s + %s (%s)", perOp(a.cpu.relayd, a.events), perOp(a.cpu.redis, a.events), perOp(a.cpu.harness, a.events)),
				fmt.Sprintf("%s (reader) + %s", perOp(b.cpu.harness, b.events), perOp(b.cpu.redis, b.events)), "", "", ""})
		}
	}
	if i := r.idle; i != nil {
		rows = append(rows, row{fmt.Sprintf("(e) relayd RSS with %d idle subscribers (%d connections)", i.subs, i.conns),
			fmt.Sprintf("%s (%s before; %d open)", fmtMiB(i.after), fmtMiB(i.before), i.open), "–", "", "≤ 100 MiB",
			verdict(i.after <= 100<<20 && i.open == i.subs, fmtMiB(i.after))})
	}
	var wrel, wbase [2]*wrkResult
	for _, w := range r.wrk {
		k := 0
		if w.variant == "fixed" {
			k = 1
		}
		if w.target == "relayd" {
			wrel[k] = w
		} else {
			wbase[k] = w
		}
	}
	for k, name := range []string{"wrk, unique signed bodies (precomputed, %s per thread)", "wrk, one fixed signed body (relayd: duplicate path)"} {
		a, b := wrel[k], wbase[k]
		if a == nil || b == nil {
			continue
		}
		if k == 0 {
			name = fmt.Sprintf(name, fmtInt(int64(c.wrkPerThread)))
		}
		rows = append(rows, row{fmt.Sprintf("%s, %d connections: req/s (p50 / p99)", name, c.wrkConns),
			fmt.Sprintf("%s (%s / %s, non-2xx %d)", fmtRate(a.perSec), a.p50, a.p99, a.non2xx),
			fmt.Sprintf("%s (%s / %s, non-2xx %d)", fmtRate(b.perSec), b.p50, b.p99, b.non2xx),
			ratio(a.perSec, b.perSec), "relayd ahead", verdict(a.perSec > b.perSec, "behind")})
	}
	return rows
}

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\trelayd\thand-written\tratio\ttarget\tmet")
	for _, x := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.what, x.relayd, x.baseline, x.ratio, x.target, strings.ReplaceAll(x.met, "**", ""))
	}
	tw.Flush()
}

const (
	markBegin = "<!-- relaybench:begin -->"
	markEnd   = "<!-- relaybench:end -->"
)

func (r *report) markdown() string {
	var b bytes.Buffer
	m := r.machine
	fmt.Fprintf(&b, "%s\n", markBegin)
	args := make([]string, 0, len(os.Args)-1)
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " '\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	fmt.Fprintf(&b, "Command: `%s` (runs `relaybench %s`)\n\n", r.cfg.command, strings.Join(args, " "))
	fmt.Fprintf(&b, "Date: %s. Machine: %d CPUs (%s), Linux %s, %s, Redis %s. Load average %s at the start, %s at the end (the run's own processes included).\n\n",
		m.Date, m.NProc, m.CPUModel, m.Kernel, m.Go, m.Redis, m.LoadAvg, r.loadEnd)
	fmt.Fprintln(&b, "| measurement | relayd | hand-written baseline | relayd / baseline | target | met |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|")
	for _, x := range r.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", x.what, x.relayd, x.baseline, x.ratio, x.target, x.met)
	}
	if r.idle != nil {
		fmt.Fprintf(&b, "\nRSS source: %s.\n", r.idle.source)
	}
	fmt.Fprintf(&b, "%s\n", markEnd)
	return b.String()
}

// writeMarkdown replaces the marked results section of path (appending it when the markers
// are missing).
func (r *report) writeMarkdown(path string) error {
	return replaceSection(path, markBegin, markEnd, r.markdown())
}

// replaceSection replaces the text from begin to end (markers included) in path with sec,
// which starts with begin and ends with end; it is appended when the markers are missing.
func replaceSection(path, begin, end, sec string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + sec + strings.TrimPrefix(s[j+len(end):], "\n")
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n" + sec
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// writeGoBench puts the output of go test -bench (benchFile) in the marked Go benchmarks
// section of path, with the command that produced it.
func writeGoBench(path, benchFile, command string) error {
	out, err := os.ReadFile(benchFile)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", goBenchBegin)
	fmt.Fprintf(&b, "Command: `%s` (%s, load average %s)\n\n```\n", command, time.Now().UTC().Format("2006-01-02 15:04 UTC"), loadAvg())
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		// Keep the benchmark lines and the package headers, not PASS/ok noise.
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "pkg:") || strings.HasPrefix(line, "cpu:") {
			b.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&b, "```\n%s\n", goBenchEnd)
	return replaceSection(path, goBenchBegin, goBenchEnd, b.String())
}

const (
	goBenchBegin = "<!-- gobench:begin -->"
	goBenchEnd   = "<!-- gobench:end -->"
)
