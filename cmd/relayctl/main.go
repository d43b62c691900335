// Command relayctl is the eventrelay command line: send signed test webhooks, tail and replay
// the event stream, consume as a consumer group, inspect history and dead letters, and list
// the configured sources.
//
//	relayctl send --source demo --secret devsecret --data '{"id":"evt_1","type":"order.created"}'
//	relayctl tail --from-start
//	relayctl events list --source demo
//	relayctl sources
//
// Run `relayctl help` for the commands and `relayctl <command> --help` for each one.
// Exit status: 0 success, 1 error, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its output made explicit; it stops on SIGINT and SIGTERM.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runContext(ctx, &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}, args)
}

// env is what a command sees of the process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

// envOr returns the environment variable name, or def when it is unset or empty.
func (e *env) envOr(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// runner runs a command with its positional arguments, after its flags were parsed.
type runner func(ctx context.Context, args []string) error

// command is one relayctl command.
type command struct {
	name     string // "send", "events list"
	synopsis string // after "relayctl <name> "
	summary  string // one line, for the command list
	doc      string // the help text after the synopsis
	// setup defines the command's flags on fs and returns the function that runs it.
	setup func(fs *flag.FlagSet, e *env) runner
}

var commands []*command

func init() {
	commands = []*command{sendCommand, tailCommand, eventsListCommand, eventsGetCommand, dlqListCommand, dlqRedriveCommand, sourcesCommand, refusedCommand, destinationsListCommand, destinationsResumeCommand}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// groups are the command names with subcommands ("events list").
func isGroup(name string) bool {
	for _, c := range commands {
		if strings.HasPrefix(c.name, name+" ") {
			return true
		}
	}
	return false
}

// usageError is a command line mistake: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// runContext runs relayctl with args until ctx ends and returns the exit status.
func runContext(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		printMainHelp(e.stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(e, args[1:])
	}
	name := args[0]
	rest := args[1:]
	if isGroup(name) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			if len(rest) > 0 && isHelpFlag(rest[0]) {
				printGroupHelp(e.stdout, name)
				return 0
			}
			fmt.Fprintf(e.stderr, "relayctl %s: a subcommand is needed\n\n", name)
			printGroupHelp(e.stderr, name)
			return 2
		}
		name += " " + rest[0]
		rest = rest[1:]
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "relayctl: unknown command %q (run 'relayctl help')\n", name)
		return 2
	}
	fs := flag.NewFlagSet("relayctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fn := c.setup(fs, e)
	pos, err := parseArgs(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(e.stdout, c, fs)
		return 0
	}
	if err == nil {
		err = fn(ctx, pos)
	}
	return report(e, c, fs, err)
}

// report prints err and returns the exit status for it.
func report(e *env, c *command, fs *flag.FlagSet, err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "relayctl %s: %v\nusage: relayctl %s %s\n(run 'relayctl %s --help' for the flags)\n", c.name, err, c.name, c.synopsis, c.name)
		return 2
	case isFlagError(err):
		fmt.Fprintf(e.stderr, "relayctl %s: %v\nusage: relayctl %s %s\n(run 'relayctl %s --help' for the flags)\n", c.name, err, c.name, c.synopsis, c.name)
		return 2
	default:
		fmt.Fprintf(e.stderr, "relayctl %s: %s\n", c.name, errorMessage(err))
		return 1
	}
}

func isHelpFlag(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

// parseArgs parses flags anywhere among the positional arguments ("events get ID --source S"),
// until a "--".
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError{err}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError is an error of the flag package (unknown flag, bad value): exit status 2.
type flagError struct{ error }

func (e flagError) Unwrap() error { return e.error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

func help(e *env, args []string) int {
	if len(args) == 0 {
		printMainHelp(e.stdout)
		return 0
	}
	name := strings.Join(args, " ")
	if c := lookup(name); c != nil {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.setup(fs, e)
		printCommandHelp(e.stdout, c, fs)
		return 0
	}
	if isGroup(name) {
		printGroupHelp(e.stdout, name)
		return 0
	}
	fmt.Fprintf(e.stderr, "relayctl help: unknown command %q\n", name)
	return 2
}

func printMainHelp(w io.Writer) {
	fmt.Fprint(w, `relayctl is the eventrelay command line.

Usage:
  relayctl <command> [flags] [arguments]

Commands:
`)
	width := len("help [command]")
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-*s  %s\n", width, "help [command]", "show a command's help")
	fmt.Fprint(w, `
Commands that call the gRPC API (tail, events, dlq) take --addr (default $RELAY_ADDR or
localhost:9090), --token (default $RELAY_TOKEN), and --tls, --ca, --cert, --key,
--insecure-skip-verify for TLS and mutual TLS. send posts to relayd's HTTP listener (--url);
sources, refused and destinations read its admin listener (--admin; with --token when relayd
has auth.tokens).

Exit status: 0 success, 1 error (the server's message is printed), 2 usage error.
Run 'relayctl <command> --help' for a command's flags.
`)
}

func printGroupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage:\n  relayctl %s <subcommand> [flags]\n\nSubcommands:\n", group)
	for _, c := range commands {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			fmt.Fprintf(w, "  %-10s %s\n", sub, c.summary)
		}
	}
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage:\n  relayctl %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.doc))
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		head := "  " + dash + f.Name
		if typ != "" {
			head += " " + typ
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		lines = append(lines, fmt.Sprintf("%s\n      %s%s", head, usage, def))
	})
	sort.Strings(lines)
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s\n", strings.Join(lines, "\n"))
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
