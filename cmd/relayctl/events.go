package main

import (
	"context"
	"flag"
	"fmt"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var eventsListCommand = &command{
	name:     "events list",
	synopsis: "--source S [--limit N] [--newest-first] [--since TIME] [--until TIME] [-o text|json|cloudevents]",
	summary:  "list a source's stored events",
	doc: `
Lists the events stored for a source, oldest first (--newest-first for the reverse), optionally
only those received within [--since, --until). Times are a duration ago (30m, 1h, 2d), an
RFC 3339 time or a date. Output as for tail: text lines "time source type id", json (each
Delivery with its cursor: resume a tail after it with --after) or cloudevents.`,
	setup: func(fs *flag.FlagSet, e *env) runner { return setupList(fs, e, false) },
}

var dlqListCommand = &command{
	name:     "dlq list",
	synopsis: "--source S --group G [--limit N] [--newest-first] [--since TIME] [--until TIME] [-o text|json|cloudevents]",
	summary:  "list a consumer group's dead letters",
	doc: `
Lists the dead letters of consumer group --group on a source: events the group failed to
acknowledge within its max_delivery_attempts deliveries. Dead letters belong to the group that
failed them; other groups do not see them. 'relayctl dlq redrive' delivers them again to that
group.`,
	setup: func(fs *flag.FlagSet, e *env) runner { return setupList(fs, e, true) },
}

func setupList(fs *flag.FlagSet, e *env, deadLetters bool) runner {
	g := addGRPCFlags(fs, e)
	var (
		source, since, until, format string
		group                        string
		limit                        int
		newestFirst                  bool
	)
	fs.StringVar(&source, "source", "", "source `name` (required)")
	if deadLetters {
		fs.StringVar(&group, "group", "", "the consumer `group` whose dead letters are listed (required)")
	}
	fs.IntVar(&limit, "limit", 100, "most events to list (0: all)")
	fs.BoolVar(&newestFirst, "newest-first", false, "list the newest first")
	fs.StringVar(&since, "since", "", "only events received at or after this `time`")
	fs.StringVar(&until, "until", "", "only events received before this `time`")
	fs.StringVar(&format, "o", formatText, "output `format`: text, json or cloudevents")
	fs.StringVar(&format, "output", formatText, "same as -o")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected arguments %q", args)
		}
		if source == "" {
			return usagef("--source is required")
		}
		if deadLetters && group == "" {
			return usagef("--group is required: dead letters belong to a consumer group")
		}
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		if err := checkFormat(format, formatText, formatJSON, formatCloudEvents); err != nil {
			return err
		}
		req := &eventrelayv1.ListEventsRequest{Source: source, DeadLetters: deadLetters, Group: group}
		if newestFirst {
			req.Order = eventrelayv1.ListOrder_LIST_ORDER_NEWEST_FIRST
		}
		for _, t := range []struct {
			flag, value string
			dst         **timestamppb.Timestamp
		}{{"--since", since, &req.StartTime}, {"--until", until, &req.EndTime}} {
			if t.value == "" {
				continue
			}
			ts, err := parseTime(t.value, e.now())
			if err != nil {
				return usagef("%s: %v", t.flag, err)
			}
			*t.dst = timestamppb.New(ts)
		}
		return g.call(ctx, func(ctx context.Context, client eventrelayv1.EventServiceClient) error {
			for n := 0; limit == 0 || n < limit; {
				req.PageSize = 1000
				if limit > 0 {
					req.PageSize = int32(min(limit-n, 1000))
				}
				resp, err := client.ListEvents(ctx, req)
				if err != nil {
					return err
				}
				for _, d := range resp.GetDeliveries() {
					if err := writeDelivery(e.stdout, format, d); err != nil {
						return err
					}
				}
				n += len(resp.GetDeliveries())
				if resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			return nil
		})
	}
}

var eventsGetCommand = &command{
	name:     "events get",
	synopsis: "--source S [-o json|text|cloudevents|data] ID",
	summary:  "show one stored event",
	doc: `
Shows one stored event by its id (found while within both the source's retention and its
dedupe window). -o json (default) prints the Event as protojson (data base64-encoded, as
protobuf bytes are in JSON); -o data prints the payload exactly as received; text and
cloudevents as for tail.`,
	setup: setupGet,
}

func setupGet(fs *flag.FlagSet, e *env) runner {
	g := addGRPCFlags(fs, e)
	var source, format string
	fs.StringVar(&source, "source", "", "source `name` (required)")
	fs.StringVar(&format, "o", formatJSON, "output `format`: json, text, cloudevents or data")
	fs.StringVar(&format, "output", formatJSON, "same as -o")
	return func(ctx context.Context, args []string) error {
		if source == "" {
			return usagef("--source is required")
		}
		if len(args) != 1 {
			return usagef("one event ID is needed")
		}
		if err := checkFormat(format, formatJSON, formatText, formatCloudEvents, formatData); err != nil {
			return err
		}
		var resp *eventrelayv1.GetEventResponse
		err := g.call(ctx, func(ctx context.Context, client eventrelayv1.EventServiceClient) (err error) {
			resp, err = client.GetEvent(ctx, &eventrelayv1.GetEventRequest{Source: source, Id: args[0]})
			return err
		})
		if err != nil {
			return err
		}
		if format == formatJSON {
			opts := jsonOptions
			opts.Multiline, opts.Indent = true, "  "
			b, err := opts.Marshal(resp.GetEvent())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		}
		return writeEvent(e.stdout, format, resp.GetEvent())
	}
}

var dlqRedriveCommand = &command{
	name:     "dlq redrive",
	synopsis: "--source S --group G [--id ID]...",
	summary:  "deliver a consumer group's dead letters again to that group",
	doc: `
Delivers the dead letters of consumer group --group on the source (only those with the given
--id, or all of them) again to that group only, as first deliveries of their original entries,
and removes them from its dead letters. Other groups and tail subscribers see nothing new and
the stream does not grow. A dead letter whose original entry retention has removed stays a
dead letter. Prints how many were redriven.`,
	setup: func(fs *flag.FlagSet, e *env) runner {
		g := addGRPCFlags(fs, e)
		var source, group string
		var ids stringList
		fs.StringVar(&source, "source", "", "source `name` (required)")
		fs.StringVar(&group, "group", "", "the consumer `group` whose dead letters are redriven, and the only one that receives them (required)")
		fs.Var(&ids, "id", "only the dead letter with this event `id` (repeatable; default: all)")
		return func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q (event ids go in --id)", args)
			}
			if source == "" {
				return usagef("--source is required")
			}
			if group == "" {
				return usagef("--group is required: dead letters belong to a consumer group")
			}
			return g.call(ctx, func(ctx context.Context, client eventrelayv1.EventServiceClient) error {
				resp, err := client.RedriveDeadLetters(ctx, &eventrelayv1.RedriveDeadLettersRequest{Source: source, Group: group, Ids: ids})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "redriven %d\n", resp.GetRedriven())
				return err
			})
		}
	},
}
