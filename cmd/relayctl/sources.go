package main

import (
	"cmp"
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
	adminp, formatp, tlsf := adminFlags(fs, e)
	fs.StringVar(formatp, "o", formatText, "output `format`: text or json")
	fs.StringVar(formatp, "output", formatText, "same as -o")
	return func(ctx context.Context, args []string) error {
		admin, format := *adminp, *formatp
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if err := checkFormat(format, formatText, formatJSON); err != nil {
			return err
		}
		body, err := adminCall(ctx, tlsf, admin, http.MethodGet, "/v1/admin/sources")
		if err != nil {
			return err
		}
		var sources []sourceStatus
		if err := json.Unmarshal(body, &sources); err != nil {
			return fmt.Errorf("unexpected answer from %s: %v", admin, err)
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

// adminCall makes a request to relayd's admin listener admin (host:port or URL) and returns
// the body of a 200 answer; another status is an error carrying relayd's message.
func adminCall(ctx context.Context, tlsf *tlsFlags, admin, method, path string) ([]byte, error) {
	base := admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client, err := tlsf.httpClient(30 * time.Second)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return nil, usagef("--admin %q: %v", admin, err)
	}
	if token := cmp.Or(tlsf.token, tlsf.envToken); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
