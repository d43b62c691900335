# eventrelay — common tasks. `make test` is the test command CI runs.
GO ?= go
PKGS := ./...
FUZZTIME ?= 1m

.PHONY: all build generate check-generated lint test test-short fuzz fuzz-smoke bench bench-go screenshots clean

all: lint build test

build:
	$(GO) build -o bin/ ./cmd/...

# Regenerate gen/ from proto/ with the generators pinned as tool directives in go.mod.
generate:
	$(GO) tool buf generate
	cp gen/openapiv2/eventrelay.swagger.json server/openapi/eventrelay.swagger.json

# Fails when regenerating changes gen/ (or the embedded OpenAPI copy).
check-generated: generate
	@git diff --exit-code --stat -- gen server/openapi || { echo "gen/ is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen server/openapi)" || { git status --porcelain -- gen server/openapi; echo "gen/ has untracked generated files: run 'make generate' and commit"; exit 1; }

lint:
	$(GO) tool buf lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	@$(GO) mod tidy -diff >/dev/null || { $(GO) mod tidy -diff; echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }

# The test command: unit, conformance (embedded and real Redis), end-to-end, and a short
# run of every fuzz target's seed corpus. Set RELAY_REQUIRE_REDIS=1 to fail instead of
# skipping when redis-server is not installed.
test:
	$(GO) test -count=1 -timeout 12m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# The web console's browser test, saving its screenshots to docs/console (shown by
# docs/console.md); needs chromium.
screenshots:
	RELAY_SCREENSHOTS=$(CURDIR)/docs/console RELAY_REQUIRE_BROWSER=1 $(GO) test -count=1 -run '^TestConsoleInBrowser$$' ./internal/daemon

# Every fuzz target for $(FUZZTIME) each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# A short run of every fuzz target (CI): a count of inputs rather than a time, because a
# time runs out during the seed corpus's baseline on a loaded machine ("context deadline
# exceeded") although nothing failed.
fuzz-smoke:
	$(MAKE) fuzz FUZZTIME=2000x

# Load benchmark (cmd/relaybench): relayd, built here, against a redis-server started on a
# free loopback port (or REDIS_URL), and in the same run on the same Redis the hand-written
# receiver it is measured against (and wrk against both when wrk is installed). Prints the
# table and writes it to BENCHMARKS.md; takes about 3 minutes. BENCH_FLAGS adds relaybench
# flags (bin/relaybench -h).
BENCH_FLAGS ?=
bench:
	$(GO) build -o bin/ ./cmd/relayd ./cmd/relaybench
	./bin/relaybench -relayd bin/relayd -start-redis \
	  -phases idle,ingest,e2e,fanout,replay$$(command -v wrk >/dev/null && echo ,wrk) \
	  -write BENCHMARKS.md -command 'make bench' $(BENCH_FLAGS)

# Go benchmarks (-benchmem): verify, ingest (event building), JSON lookup, cursor codec,
# delivery encoding, the webhook handler and the batching writer; recorded in BENCHMARKS.md.
bench-go:
	$(GO) build -o bin/ ./cmd/relaybench
	$(GO) test -run='^$$' -bench=. -benchmem ./relay/... ./server/... > bin/gobench.txt; st=$$?; cat bin/gobench.txt; exit $$st
	./bin/relaybench -gobench bin/gobench.txt -write BENCHMARKS.md -command 'make bench-go'

clean:
	rm -rf bin
