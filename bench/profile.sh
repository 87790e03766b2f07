#!/usr/bin/env bash
# Where the embedded mode spends its CPU under load: builds the release binary with its symbols
# (CARGO_PROFILE_RELEASE_STRIP=none; only the final link changes), starts it on a temporary data
# dir, seeds one user with 50 tasks, runs wrk on one scenario at 100 connections and samples the
# server with `perf record` meanwhile, then prints the CPU split by thread, by library and the
# hottest functions. Traffic goes only to 127.0.0.1; everything started is stopped on exit.
#
#   bench/profile.sh                 # the list scenario
#   SCENARIO=create bench/profile.sh # or get, complete
#
# Needs perf (Debian: linux-perf), wrk, curl and jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCENARIO=${SCENARIO:-list}
DURATION=${DURATION:-10}
TMP=$(mktemp -d /tmp/flotilla-profile.XXXXXX)
PID=""
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

for tool in perf wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "profile: $tool is needed" >&2; exit 1; }
done

cd "$ROOT"
CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --locked --bin flotilla >&2
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla" "$TMP/flotilla"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
env -i PATH="$PATH" FLOTILLA_DATA_DIR="$TMP/data" FLOTILLA_LISTEN="127.0.0.1:$PORT" FLOTILLA_LOG=warn \
    FLOTILLA_RATE_LIMIT_PER_IP=0 FLOTILLA_RATE_LIMIT_PER_USER=0 "$TMP/flotilla" >"$TMP/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do curl -fs -o /dev/null "$BASE/health" && break; sleep 0.05; done

json=$(curl -fsS -H 'content-type: application/json' "$BASE/api/auth/signup" \
    -d '{"name":"Profile","email":"profile@example.com","password":"profile-password-42"}')
USER_ID=$(jq -r .user.id <<<"$json")
TOKEN=$(jq -r .access_token <<<"$json")
ids=()
for i in $(seq 1 50); do
    ids+=("$(curl -fsS -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        "$BASE/api/$USER_ID/tasks" -d "{\"title\":\"task $i\"}" | jq -r .id)")
done
export BENCH_USER=$USER_ID BENCH_TOKEN=$TOKEN BENCH_TASK_ID=${ids[0]}
BENCH_TASK_IDS=$(IFS=,; echo "${ids[*]}")
export BENCH_TASK_IDS

# warm up, then sample the server while wrk runs
wrk -t2 -c100 -d3s -s "bench/$SCENARIO.lua" "$BASE" >/dev/null
perf record -F 1999 -g -p "$PID" -o "$TMP/perf.data" -- sleep "$((DURATION - 1))" >/dev/null 2>&1 &
PERF=$!
wrk -t2 -c100 -d"${DURATION}s" --latency -s "bench/$SCENARIO.lua" "$BASE" | grep -E 'Requests/sec|  (50|99)%'
wait "$PERF"

# report N ARGS…: the first N lines (awk reads everything, so perf never gets SIGPIPE)
report() {
    local n=$1
    shift
    perf report -i "$TMP/perf.data" --no-children "$@" 2>/dev/null | grep -E '^ +[0-9.]+%' | awk -v n="$n" 'NR <= n'
}
echo
echo "== $SCENARIO at 100 connections: server CPU by thread"
report 5 --sort comm
echo
echo "== by library (kernel = scheduling, futex wake-ups, sockets)"
report 6 --sort dso
echo
echo "== hottest functions"
report 30 --sort sym
