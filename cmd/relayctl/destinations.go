package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"
)

var destinationsListCommand = &command{
	name:     "destinations list",
	synopsis: "[--admin host:port] [-o text|json]",
	summary:  "list the push destinations with their state, breaker and counts",
	doc: `
Lists relayd's push destinations from its admin listener (GET /v1/admin/destinations), as
this replica sees them: state (running, paused by a 410 Gone, standby for an ordered
destination another replica delivers, retrying), circuit breaker (closed, open, half_open),
attempts in flight, events delivered, failed attempts, events dead-lettered, and the last
error. Dead letters are read and redriven with 'relayctl dlq --group dest:<name>'.
-o json prints the admin API's JSON.`,
	setup: func(fs *flag.FlagSet, e *env) runner {
		admin, format, tlsf := adminFlags(fs, e)
		fs.StringVar(format, "o", formatText, "output `format`: text or json")
		fs.StringVar(format, "output", formatText, "same as -o")
		return func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			if err := checkFormat(*format, formatText, formatJSON); err != nil {
				return err
			}
			body, err := adminCall(ctx, tlsf, *admin, http.MethodGet, "/v1/admin/destinations")
			if err != nil {
				return err
			}
			var dests []destinationStatus
			if err := json.Unmarshal(body, &dests); err != nil {
				return fmt.Errorf("unexpected answer from %s: %v", *admin, err)
			}
			if *format == formatJSON {
				_, err = e.stdout.Write(body)
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DESTINATION\tSTATE\tBREAKER\tIN FLIGHT\tDELIVERED\tFAILED\tDEAD LETTERED\tLAST ERROR")
			for _, d := range dests {
				state, last := d.State, "-"
				if d.PausedReason != "" {
					state += " (" + d.PausedReason + ")"
				}
				if d.LastError != "" {
					last = d.LastError + " at " + d.LastErrorTime.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", d.Name, state, d.Breaker, d.InFlight, d.Delivered, d.Failed, d.DeadLettered, last)
			}
			return tw.Flush()
		}
	},
}

var destinationsResumeCommand = &command{
	name:     "destinations resume",
	synopsis: "[--admin host:port] NAME",
	summary:  "resume a push destination a 410 Gone paused",
	doc: `
Resumes the push destination NAME on the relayd replica behind --admin (POST
/v1/admin/destinations/NAME/resume). A destination pauses when its URL answers 410 Gone;
every replica pauses on its own, so resume it on each.`,
	setup: func(fs *flag.FlagSet, e *env) runner {
		admin, _, tlsf := adminFlags(fs, e)
		return func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("want one destination name, got %d arguments", len(args))
			}
			if _, err := adminCall(ctx, tlsf, *admin, http.MethodPost, "/v1/admin/destinations/"+url.PathEscape(args[0])+"/resume"); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "resumed %s\n", args[0])
			return nil
		}
	},
}

// destinationStatus is an element of relayd's GET /v1/admin/destinations.
type destinationStatus struct {
	Name          string    `json:"name"`
	State         string    `json:"state"`
	PausedReason  string    `json:"paused_reason"`
	Breaker       string    `json:"breaker"`
	InFlight      int64     `json:"in_flight"`
	Delivered     int64     `json:"delivered"`
	Failed        int64     `json:"failed"`
	DeadLettered  int64     `json:"dead_lettered"`
	LastError     string    `json:"last_error"`
	LastErrorTime time.Time `json:"last_error_time"`
}

// adminFlags declares the flags of a command that calls the admin listener.
func adminFlags(fs *flag.FlagSet, e *env) (admin, format *string, tlsf *tlsFlags) {
	admin, format = new(string), new(string)
	fs.StringVar(admin, "admin", e.envOr("RELAY_ADMIN", "localhost:9091"), "relayd admin listener `host:port` or URL ($RELAY_ADMIN)")
	tlsf = addTLSFlags(fs, false)
	tlsf.envToken = e.getenv("RELAY_TOKEN")
	fs.StringVar(&tlsf.token, "token", "", "bearer `token` with console: true, when relayd has auth.tokens (default $RELAY_TOKEN)")
	return admin, format, tlsf
}
