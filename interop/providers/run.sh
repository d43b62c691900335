#!/usr/bin/env bash
# Provider SDK interop (issue 3, "Done when"): builds relayd, starts it on free loopback ports
# with the embedded store and one source per provider, then runs interop.mjs, which signs
# webhooks with the providers' own SDKs (stripe, @octokit/webhooks-methods, standardwebhooks
# (also for GitLab signing tokens), svix, twilio, @hubspot/api-client) or by hand per the docs
# and then checks them with the provider's own verifier (@shopify/shopify-api, @linear/sdk; Slack
# by hand only), posts them, and checks what relayd answered and stored. Exits non-zero on any
# failure. Needs go, node (>= 20) and npm.
#
#   interop/providers/run.sh            # from anywhere; npm ci runs when node_modules is stale
#   KEEP_LOG=1 interop/providers/run.sh # print relayd's log even when everything passed
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in go node npm; do
  command -v "$tool" >/dev/null || { echo "interop: $tool is not installed" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/eventrelay-interop.XXXXXX")"
relayd_pid=""
cleanup() {
  local rc=$?
  if [ -n "$relayd_pid" ] && kill -0 "$relayd_pid" 2>/dev/null; then
    kill "$relayd_pid" 2>/dev/null || true
    wait "$relayd_pid" 2>/dev/null || true
  fi
  if [ -f "$work/relayd.log" ] && { [ "$rc" != 0 ] || [ -n "${KEEP_LOG:-}" ]; }; then
    echo "--- relayd log (last 60 lines) ---" >&2
    tail -n 60 "$work/relayd.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "interop: building relayd"
(cd "$root" && go build -o "$work/relayd" ./cmd/relayd)

# npm ci when node_modules is missing or was installed from another package-lock.json (the
# checksum of the lockfile installed is kept in node_modules/.interop-lock).
lock_sum="$(cksum <"$here/package-lock.json")"
if [ "$(cat "$here/node_modules/.interop-lock" 2>/dev/null)" != "$lock_sum" ]; then
  echo "interop: npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$here/node_modules/.interop-lock"
fi

# The secrets of the sources, literals shared by relayd's configuration and interop.mjs.
export INTEROP_STRIPE_SECRET="whsec_CuL6eJNw-g3NDhSObu8deq2Y0OpRWuUV"
export INTEROP_STRIPE_SECRET_OLD="whsec_5Xto9Jm2TagM0vEibHRGpmPB-zhk12VY"
export INTEROP_GITHUB_SECRET="It's a Secret to Everybody"
export INTEROP_STANDARDWEBHOOKS_SECRET="whsec_EO0aBoGFTYJobtjq2hxBrmJe6x1nbTBC"
export INTEROP_SVIX_SECRET="whsec_Q7HlzbRGeIisX0Gdn4tiuymwppksnFQh"
export INTEROP_SVIX_SECRET_OLD="whsec_uEO7bW+qPN0UBiY42wPLPmo5z+5SiMxy"
export INTEROP_TWILIO_TOKEN="798772b780ab02f2c3a80402874910ed"
export INTEROP_TWILIO_TOKEN_SECONDARY="cd998c63be9c6b4949e2705d5689319f"
export INTEROP_SHOPIFY_SECRET="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"
export INTEROP_SLACK_SECRET="8f742231b10e8888abcd99yyyzzz85a5"
export INTEROP_LINEAR_SECRET="lin_wh_7f3c9a1e5b2d8046c1e9f7a3b5d2c8e0"
export INTEROP_HUBSPOT_SECRET="2c5d8e1f-4a7b-4c3d-9e6f-0a1b2c3d4e5f"
export INTEROP_GITLAB_SECRET="whsec_Z2l0bGFiLWludGVyb3Atc2lnbmluZy10b2tlbi0wMQ=="
# A twilio source behind a proxy: the public URL Twilio signs is not the one we post to.
export INTEROP_TWILIO_PROXIED_URL="https://hooks.example.com/v1/webhooks/twilio-proxied"

# free_ports N prints N distinct free loopback TCP ports.
free_ports() {
  node -e '
    const net = require("net");
    const n = Number(process.argv[1]);
    const servers = [];
    (async () => {
      for (let i = 0; i < n; i++) {
        const s = net.createServer();
        await new Promise((ok, fail) => { s.once("error", fail); s.listen(0, "127.0.0.1", ok); });
        servers.push(s);
      }
      console.log(servers.map((s) => s.address().port).join(" "));
      for (const s of servers) s.close();
    })();' "$1"
}

# http_status HOST PORT PATH prints the HTTP status of a GET (bash /dev/tcp: no curl needed).
http_status() {
  local line
  exec 3<>"/dev/tcp/$1/$2" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$3" "$1" >&3
  IFS=' ' read -r _ line _ <&3 || true
  exec 3<&- 3>&-
  echo "${line:-0}"
}

write_config() { # http_port admin_port
  cat >"$work/relay.yaml" <<EOF
grpc:  { addr: "127.0.0.1:0" }
admin: { addr: "127.0.0.1:$2" }
log:   { level: info, format: text }
# Every request comes from 127.0.0.1 and many fail verification on purpose: no per-address budget.
http:  { addr: "127.0.0.1:$1", unverified_limit: { rps: 0 } }
sources:
  - name: stripe
    provider: stripe
    secrets:
      - { id: current, value: "$INTEROP_STRIPE_SECRET" }
      - { id: previous, value: "$INTEROP_STRIPE_SECRET_OLD" }
  - name: github
    provider: github
    secrets: ["$INTEROP_GITHUB_SECRET"]
  - name: github-form
    provider: github
    body_format: form
    secrets: ["$INTEROP_GITHUB_SECRET"]
  - name: standardwebhooks
    provider: standardwebhooks
    secrets: ["$INTEROP_STANDARDWEBHOOKS_SECRET"]
  - name: svix
    provider: svix
    secrets:
      - { id: current, value: "$INTEROP_SVIX_SECRET" }
      - { id: previous, value: "$INTEROP_SVIX_SECRET_OLD" }
  - name: twilio
    provider: twilio
    secrets:
      - { id: primary, value: "$INTEROP_TWILIO_TOKEN" }
      - { id: secondary, value: "$INTEROP_TWILIO_TOKEN_SECONDARY" }
    url: http://127.0.0.1:$1/v1/webhooks/twilio
  - name: twilio-json
    provider: twilio
    body_format: json
    secrets: ["$INTEROP_TWILIO_TOKEN"]
    url: http://127.0.0.1:$1/v1/webhooks/twilio-json
  - name: twilio-proxied
    provider: twilio
    secrets: ["$INTEROP_TWILIO_TOKEN"]
    url: $INTEROP_TWILIO_PROXIED_URL
  - name: shopify
    provider: shopify
    secrets: ["$INTEROP_SHOPIFY_SECRET"]
  - name: slack
    provider: slack
    secrets: ["$INTEROP_SLACK_SECRET"]
  - name: slack-form
    provider: slack
    body_format: form
    secrets: ["$INTEROP_SLACK_SECRET"]
  - name: linear
    provider: linear
    secrets: ["$INTEROP_LINEAR_SECRET"]
  - name: hubspot
    provider: hubspot
    secrets: ["$INTEROP_HUBSPOT_SECRET"]
    url: http://127.0.0.1:$1/v1/webhooks/hubspot
  - name: gitlab
    provider: gitlab
    secrets: ["$INTEROP_GITLAB_SECRET"]
EOF
}

# Start relayd; a port taken between free_ports and relayd's bind is retried with new ones.
started=""
for attempt in 1 2 3; do
  read -r http_port admin_port < <(free_ports 2)
  write_config "$http_port" "$admin_port"
  "$work/relayd" -config "$work/relay.yaml" >"$work/relayd.log" 2>&1 &
  relayd_pid=$!
  for _ in $(seq 1 100); do # up to 10 s
    if ! kill -0 "$relayd_pid" 2>/dev/null; then
      break
    fi
    if [ "$(http_status 127.0.0.1 "$admin_port" /readyz 2>/dev/null)" = 200 ]; then
      started=1
      break
    fi
    sleep 0.1
  done
  [ -n "$started" ] && break
  if kill -0 "$relayd_pid" 2>/dev/null; then
    echo "interop: relayd did not become ready within 10 s" >&2
    exit 1
  fi
  wait "$relayd_pid" 2>/dev/null || true
  relayd_pid=""
  if ! grep -q "address already in use" "$work/relayd.log"; then
    echo "interop: relayd failed to start" >&2
    cat "$work/relayd.log" >&2
    exit 1
  fi
  echo "interop: port taken, retrying ($attempt)"
done
[ -n "$started" ] || { echo "interop: relayd could not bind free ports" >&2; exit 1; }

echo "interop: relayd ready on 127.0.0.1:$http_port (admin $admin_port)"
INTEROP_TWILIO_URL="http://127.0.0.1:$http_port/v1/webhooks/twilio" \
  INTEROP_HUBSPOT_URL="http://127.0.0.1:$http_port/v1/webhooks/hubspot" \
  node "$here/interop.mjs" "http://127.0.0.1:$http_port"
