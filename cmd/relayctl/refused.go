package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var refusedCommand = &command{
	name:     "refused",
	synopsis: "[--admin host:port] [--limit N] [-o text|json] SOURCE",
	summary:  "show the last webhooks a source refused, and why",
	doc: `
Shows the last webhook requests relayd refused for SOURCE (GET
/v1/admin/sources/SOURCE/refused on its admin listener), newest first: time, HTTP status, reason
(signature, stale, future, missing, malformed, ip, rate_limit, unverified_limit, size,
content_type, body_rate, body_memory, invalid, method, unavailable), client address, body size
and, with -v, the headers. Credentials (Authorization, cookies, any header naming a token,
secret, key, password, auth, signature or hmac, the source's own credential header, and query
values) are shown as "redacted"; bodies are never kept. relayd keeps
the last 100 per source, in memory, per replica.`,
	setup: func(fs *flag.FlagSet, e *env) runner {
		admin, format, tlsf := adminFlags(fs, e)
		fs.StringVar(format, "o", formatText, "output `format`: text or json")
		fs.StringVar(format, "output", formatText, "same as -o")
		limit := fs.Int("limit", 20, "show at most `N` (0: all kept)")
		verbose := fs.Bool("v", false, "show the headers too")
		return func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("want one source name, got %d arguments", len(args))
			}
			if err := checkFormat(*format, formatText, formatJSON); err != nil {
				return err
			}
			if *limit < 0 {
				return usagef("--limit must not be negative")
			}
			body, err := adminCall(ctx, tlsf, *admin, http.MethodGet,
				"/v1/admin/sources/"+url.PathEscape(args[0])+"/refused?limit="+strconv.Itoa(*limit))
			if err != nil {
				return err
			}
			if *format == formatJSON {
				_, err = e.stdout.Write(body)
				return err
			}
			var rs []struct {
				Time       time.Time         `json:"time"`
				Status     int               `json:"status"`
				Reason     string            `json:"reason"`
				Message    string            `json:"message"`
				ClientAddr string            `json:"client_addr"`
				Path       string            `json:"path"`
				Headers    map[string]string `json:"headers"`
				BodySize   int64             `json:"body_size"`
			}
			if err := json.Unmarshal(body, &rs); err != nil {
				return fmt.Errorf("unexpected answer from %s: %v", *admin, err)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSTATUS\tREASON\tCLIENT\tBYTES\tMESSAGE")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", r.Time.Format(time.RFC3339), r.Status, r.Reason, r.ClientAddr, r.BodySize, r.Message)
				if *verbose {
					names := make([]string, 0, len(r.Headers))
					for n := range r.Headers {
						names = append(names, n)
					}
					sort.Strings(names)
					for _, n := range names {
						fmt.Fprintf(tw, "\t\t%s: %s\n", n, strings.ReplaceAll(r.Headers[n], "\t", " "))
					}
				}
			}
			return tw.Flush()
		}
	},
}
