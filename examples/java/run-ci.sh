#!/usr/bin/env bash
# End-to-end check of the Java example against a real relayd (embedded store), for CI:
#
#   1. build the Java example (build.sh) and relayd (go build, once, into a temp dir)
#   2. start relayd on free loopback ports with a source "orders" (provider hmac)
#   3. POST 3 signed webhooks; GroupConsumer (group G, consumer c1, --max 3) must print exactly
#      those 3 events, received as one batch (max_batch), and acknowledge them
#   4. POST 1 more; a second member (c2, --max 1) of the same group must get only the new one:
#      the group resumes after what it acknowledged
#   5. POST 1 more; c3 --no-ack processes it without acknowledging, then c3 again gets the same
#      event back as its own pending delivery (attempt=2) and acknowledges it
#
# Needs go, curl, openssl, a JDK and the Debian packages build.sh names. Works from any cwd.
# Set KEEP_TMP=1 to keep the temp dir (config, relayd log, consumer output) for inspection.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in go curl openssl java; do
  command -v "$tool" >/dev/null || { echo "run-ci.sh: $tool not found" >&2; exit 1; }
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/eventrelay-java-ci.XXXXXX")"
relayd_pid=""
cleanup() {
  local rc=$?
  if [ -n "$relayd_pid" ] && kill -0 "$relayd_pid" 2>/dev/null; then
    kill "$relayd_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$relayd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$relayd_pid" 2>/dev/null || true
    wait "$relayd_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -f "$tmp/relayd.log" ]; then
    echo "run-ci.sh: FAILED (rc=$rc); relayd log tail:" >&2
    tail -n 40 "$tmp/relayd.log" >&2 || true
  fi
  if [ "${KEEP_TMP:-}" = 1 ]; then echo "run-ci.sh: kept $tmp" >&2; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { echo "run-ci.sh: [${SECONDS}s] $*"; }
fail() { echo "run-ci.sh: FAIL: $*" >&2; exit 1; }

# ---- build -------------------------------------------------------------------------
step "building the Java example"
"$here/build.sh"
classpath="$(cat "$here/build/classpath")"

step "building relayd"
(cd "$root" && go build -o "$tmp/relayd" ./cmd/relayd)

# ---- start relayd ------------------------------------------------------------------
# A free loopback port: random, nothing answers on it, and below Linux's range of ports for
# outgoing connections (32768-60999), which could otherwise take it before relayd binds it.
used_ports=" "
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    case "$used_ports" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports+="$p "
      echo "$p"
      return
    fi
  done
  fail "no free port found"
}
secret="java-ci-secret-$RANDOM$RANDOM"

# relayd reads RELAY_* variables as configuration overrides (and rejects unknown ones): start
# it without any, so that this run uses exactly the file below and the embedded store.
relay_env=()
while IFS= read -r name; do relay_env+=(-u "$name"); done < <(env | sed -n 's/^\(RELAY_[A-Za-z0-9_]*\)=.*/\1/p')

# A port taken between free_port and relayd's bind (by another test) is retried with new ones.
ready=""
for attempt in 1 2 3; do
  http_port="$(free_port)"
  grpc_port="$(free_port)"
  admin_port="$(free_port)"
  printf '%s\n' "http: { addr: \"127.0.0.1:$http_port\" }" "grpc: { addr: \"127.0.0.1:$grpc_port\" }" \
    "admin: { addr: \"127.0.0.1:$admin_port\" }" "sources:" "  - name: orders" "    provider: hmac" \
    "    secrets: [\"$secret\"]" >"$tmp/relay.yaml"
  step "starting relayd (http :$http_port, grpc :$grpc_port, admin :$admin_port)"
  env "${relay_env[@]}" "$tmp/relayd" -config "$tmp/relay.yaml" >"$tmp/relayd.log" 2>&1 &
  relayd_pid=$!
  for _ in $(seq 300); do
    kill -0 "$relayd_pid" 2>/dev/null || break
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/readyz" || true)" = 200 ]; then
      ready=1
      break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] && break
  if kill -0 "$relayd_pid" 2>/dev/null; then
    fail "relayd not ready after 60s (http://127.0.0.1:$admin_port/readyz)"
  fi
  wait "$relayd_pid" 2>/dev/null || true
  relayd_pid=""
  grep -q "address already in use" "$tmp/relayd.log" || fail "relayd exited during start-up"
  step "a port was taken; retrying ($attempt)"
done
[ -n "$ready" ] || fail "relayd could not bind free ports in 3 attempts"
step "relayd ready"

# ---- helpers -----------------------------------------------------------------------
run_id="$RANDOM$RANDOM"
group="java-ci-$run_id"

# post N: POST a signed webhook to the orders source; prints the event id the relay assigned.
post() {
  local n="$1" body sig resp code id
  body="{\"id\":\"ord-$run_id-$n\",\"type\":\"order.created\",\"order\":{\"n\":$n,\"note\":\"héllo\"}}"
  sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)"
  resp="$(curl -sS -w '\n%{http_code}' -X POST "http://127.0.0.1:$http_port/v1/webhooks/orders" \
    -H 'Content-Type: application/json' -H "X-Signature: sha256=$sig" --data-binary "$body")"
  code="${resp##*$'\n'}"
  resp="${resp%$'\n'*}"
  [ "$code" = 200 ] || fail "webhook $n: HTTP $code: $resp"
  id="$(printf '%s' "$resp" | sed -n 's/.*"event_id" *: *"\([^"]*\)".*/\1/p')"
  [ -n "$id" ] || fail "webhook $n: no event_id in $resp"
  printf '%s' "$resp" | grep -q '"duplicate" *: *true' && fail "webhook $n: unexpectedly a duplicate: $resp"
  echo "$id"
}

# consume NAME OUT ARGS...: run GroupConsumer in the CI group; stdout to OUT.
# A short ack deadline (10s instead of the default 30s) bounds how long an entry that went astray
# takes to come back (see check_first_attempt).
consume() {
  local name="$1" out="$2"
  shift 2
  if ! java -cp "$classpath" io.eventrelay.example.GroupConsumer \
      --addr "127.0.0.1:$grpc_port" --ack-deadline 10 --timeout 60 "$@" "$group" "$name" orders \
      >"$out" 2>"$out.err"; then
    cat "$out.err" >&2
    fail "GroupConsumer $name $* failed; its output: $(cat "$out")"
  fi
  cat "$out"
}

# expect_events OUT ID...: OUT holds exactly one event line per ID, for those IDs.
expect_events() {
  local out="$1" id
  shift
  [ "$(grep -c '^event ' "$out")" = "$#" ] || fail "want $# event line(s) in $out, got: $(cat "$out")"
  for id in "$@"; do
    grep -q "^event orders $id order.created attempt=[0-9]* data=.*ord-$run_id" "$out" ||
      fail "event $id missing from consumer output: $(cat "$out")"
  done
}

# check_first_attempt OUT: an event's first delivery to a live member must say attempt=1. (An entry
# that a blocking group read took for a member whose stream had just ended is handed back to the
# group uncounted, so the next member sees it as a first delivery.)
check_first_attempt() {
  if grep -Eq '^event .* attempt=([2-9]|[0-9]{2,}) ' "$1"; then
    fail "first delivery reported attempt>1: $(grep '^event' "$1" | cut -c1-80)"
  fi
}

# ---- 1: three events, one consumer -------------------------------------------------
ids=()
for n in 1 2 3; do
  id="$(post "$n")"
  ids+=("$id")
done
step "posted 3 webhooks: ${ids[*]}"

step "consumer c1 --max 3"
consume c1 "$tmp/c1.out" --max 3
expect_events "$tmp/c1.out" "${ids[@]}"
# They were stored before c1 subscribed: one read of the group's, so one batch (max_batch 64).
grep -q 'a batch of 3 deliveries' "$tmp/c1.out.err" || fail "the 3 events did not come as one batch: $(cat "$tmp/c1.out.err")"
grep -q 'data=.*héllo' "$tmp/c1.out" || fail "payload not printed as UTF-8: $(cat "$tmp/c1.out")"

# ---- 2: the group resumes after what it acknowledged --------------------------------
id4="$(post 4)"
step "posted webhook 4: $id4"
step "consumer c2 --max 1 (same group)"
consume c2 "$tmp/c2.out" --max 1
expect_events "$tmp/c2.out" "$id4"
check_first_attempt "$tmp/c2.out"

# ---- 3: not acknowledged -> delivered again ----------------------------------------
id5="$(post 5)"
step "posted webhook 5: $id5"
step "consumer c3 --no-ack --max 1"
consume c3 "$tmp/c3a.out" --no-ack --max 1
expect_events "$tmp/c3a.out" "$id5"
check_first_attempt "$tmp/c3a.out"
step "consumer c3 --max 1 again: its unacknowledged delivery comes back first"
consume c3 "$tmp/c3b.out" --max 1
expect_events "$tmp/c3b.out" "$id5"
attempt="$(sed -n 's/^event .* attempt=\([0-9]*\) .*/\1/p' "$tmp/c3b.out")"
[ "$attempt" -ge 2 ] || fail "redelivery of $id5 should have attempt >= 2, got $attempt"

step "PASS"
