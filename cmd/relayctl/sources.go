package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var sourcesCommand = &command{
	name:     "sources",
	synopsis: "[--admin host:port] [-o text|json]",
	summary:  "list the configured sources with stream length, dead letters and group lag",
	doc: `
Lists relayd's configured sources from its admin listener (GET /v1/admin/sources): provider,
partitions, events retained, dead letters, and for each consumer group its lag (events not
yet delivered to the group; "?" when relayd cannot tell) and pending events (delivered, not
yet acknowledged). -o json prints the admin API's JSON.`,
	setup: setupSources,
}

// sourceStatus is an element of relayd's GET /v1/admin/sources.
type sourceStatus struct {
	Name        string `json:"name"`
	Provider    string `json:"provider"`
	Partitions  int    `json:"partitions"`
	Length      int64  `json:"length"`
	DeadLetters int64  `json:"dead_letters"`
	Groups      []struct {
		Name      string `json:"name"`
		Lag       int64  `json:"lag"`
		Pending   int64  `json:"pending"`
		Consumers int64  `json:"consumers"`
	} `json:"groups"`
}

func setupSources(fs *flag.FlagSet, e *env) runner {
	var admin, format string
	fs.StringVar(&admin, "admin", e.envOr("RELAY_ADMIN", "localhost:9091"), "relayd admin listener `host:port` or URL ($RELAY_ADMIN)")
	fs.StringVar(&format, "o", formatText, "output `format`: text or json")
	fs.StringVar(&format, "output", formatText, "same as -o")
	tlsf := addTLSFlags(fs, false)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if err := checkFormat(format, formatText, formatJSON); err != nil {
			return err
		}
		base := admin
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		client, err := tlsf.httpClient(30 * time.Second)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/admin/sources", nil)
		if err != nil {
			return usagef("--admin %q: %v", admin, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		var sources []sourceStatus
		if err := json.Unmarshal(body, &sources); err != nil {
			return fmt.Errorf("unexpected answer from %s: %v", req.URL, err)
		}
		if format == formatJSON {
			_, err = e.stdout.Write(body)
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tPROVIDER\tPARTITIONS\tLENGTH\tDEAD LETTERS\tGROUP\tLAG\tPENDING")
		for _, s := range sources {
			row := fmt.Sprintf("%s\t%s\t%d\t%d\t%d", s.Name, s.Provider, s.Partitions, s.Length, s.DeadLetters)
			if len(s.Groups) == 0 {
				fmt.Fprintf(tw, "%s\t-\t-\t-\n", row)
			}
			for _, g := range s.Groups {
				lag := "?"
				if g.Lag >= 0 {
					lag = strconv.FormatInt(g.Lag, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", row, g.Name, lag, g.Pending)
			}
		}
		return tw.Flush()
	}
}
