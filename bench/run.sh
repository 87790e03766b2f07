#!/usr/bin/env bash
# Flotilla benchmark harness: builds the release binary, load-tests embedded mode and
# distributed mode (throwaway PostgreSQL) with wrk, and writes docs/benchmarks.md.
# Raw wrk outputs, samples and server logs go to bench/out/ (git-ignored).
#
#   bench/run.sh                          # DURATION=15s per run, CONNECTIONS="10 100"
#   QUICK=1 bench/run.sh                  # 3 s runs: a smoke test of the harness
#   DURATION=30s CONNECTIONS="10 50 100" THREADS=2 bench/run.sh
#
# Everything started here (servers, PostgreSQL, samplers) is stopped on exit, and the
# temporary directories are removed. Traffic goes only to 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3s}
else
    DURATION=${DURATION:-15s}
fi
CONNECTIONS=${CONNECTIONS:-"10 100"}
# the chat scenario's concurrencies (its target is at 50 connections)
CHAT_CONNECTIONS=${CHAT_CONNECTIONS:-"10 50"}
# optional: a flotilla binary built from before the event bus (e.g. commit 6ac0e81) whose create
# throughput is measured the same way, for the cost of the outbox and NATS (see bench/README.md)
BASELINE_BIN=${BASELINE_BIN:-}
BASELINE_SOURCE=${BASELINE_SOURCE:-$BASELINE_BIN}
THREADS=${THREADS:-2}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
NATS_BIN=${NATS_BIN:-nats-server}
SEED_TASKS=50
PASSWORD="bench-harness-password-42"

BENCH_DIR=$ROOT/bench
OUT=$BENCH_DIR/out
REPORT=$ROOT/docs/benchmarks.md
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla
RESULTS=$OUT/results.tsv

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# cleanup: every process we start is recorded in PIDS; PostgreSQL is stopped with pg_ctl
# ---------------------------------------------------------------------------------------------
PIDS=()
TMP=""
PG_DATA=""
PG_STARTED=0

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        # give each process up to 5 s to finish, then force it
        local i=0
        while kill -0 "$pid" 2>/dev/null && [[ $i -lt 50 ]]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $PG_STARTED == 1 ]]; then
        log "stopping PostgreSQL"
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 ||
            log "WARNING: pg_ctl stop failed"
        cp "$TMP/pg/postgres.log" "$OUT/distributed-postgres.log" 2>/dev/null
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        rm -rf "$TMP"
    fi
    if [[ $rc -ne 0 ]]; then
        log "failed (exit $rc); server logs are in bench/out/*.log"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run a PostgreSQL server program: as root, as the postgres user (they refuse to run as root),
# from a directory that user can read
as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd "$TMP/pg" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# forget PID: it was stopped and reaped, so cleanup must not signal it (the number may be reused)
forget_pid() {
    local pid=$1 kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# ---------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------
apt_install() {
    local pkg=$1 sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "$pkg is missing and I am not root: install it (apt-get install $pkg)"
        sudo=(sudo)
    fi
    log "$pkg not found: installing it with apt-get install -y $pkg"
    if ! "${sudo[@]}" apt-get install -y "$pkg" >"$OUT/apt-$pkg.log" 2>&1; then
        log "apt-get install failed; running apt-get update and trying again"
        "${sudo[@]}" apt-get update >>"$OUT/apt-$pkg.log" 2>&1
        "${sudo[@]}" apt-get install -y "$pkg" >>"$OUT/apt-$pkg.log" 2>&1 ||
            die "could not install $pkg (see bench/out/apt-$pkg.log)"
    fi
}

need_tools() {
    command -v wrk >/dev/null || apt_install wrk
    command -v jq >/dev/null || apt_install jq
    command -v curl >/dev/null || apt_install curl
    [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/psql ]] ||
        die "PostgreSQL server binaries not found in $PG_BIN (set PG_BIN)"
}

# microseconds since the epoch, without forking
now_us() {
    local t=$EPOCHREALTIME
    echo "${t/./}"
}

# DURATION as wrk understands it (e.g. 15s, 2m, 1h) in seconds
duration_secs() {
    local d=$1
    case $d in
        *h) echo $((${d%h} * 3600)) ;;
        *m) echo $((${d%m} * 60)) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}

USED_PORTS=" "
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $port "* ]] && continue
        # nobody listening there (a connect fails)
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------

# wait_ready NAME PID URL START_US: poll URL until it answers 200, print the ms since START_US
wait_ready() {
    local name=$1 pid=$2 url=$3 start=$4 code deadline
    deadline=$(($(now_us) + 60000000))
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        if [[ $code == 200 ]]; then
            local end
            end=$(now_us)
            awk -v us="$((end - start))" 'BEGIN { printf "%.0f\n", us / 1000 }'
            return
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited before it was ready (see bench/out/$name.log)"
        [[ $(now_us) -lt $deadline ]] || die "$name not ready after 60 s (last status $code, see bench/out/$name.log)"
        sleep 0.005
    done
}

# start_flotilla NAME [VAR=value…] [-- ARGS…]: start the binary with a clean FLOTILLA_* set;
# sets STARTED_PID and STARTED_US
start_flotilla() {
    local name=$1
    shift
    local vars=() args=()
    while [[ $# -gt 0 && $1 != -- ]]; do
        vars+=("$1")
        shift
    done
    [[ $# -gt 0 ]] && shift
    args=("$@")
    local unset_flags=() v
    for v in $(compgen -e | grep '^FLOTILLA_' || true); do
        unset_flags+=(-u "$v")
    done
    STARTED_US=$(now_us)
    env "${unset_flags[@]}" FLOTILLA_LOG=warn FLOTILLA_LOG_FORMAT=json "${vars[@]}" \
        "${RUN_BIN:-$BIN}" "${args[@]}" >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

stop_pid() {
    local pid=$1 i=0
    kill "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && [[ $i -lt 100 ]]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# KB = the "Field:" of /proc/PID/FILE in kB (VmRSS, VmHWM of status; Pss of smaps_rollup), 0 if
# the process is gone. Bash builtins only: the samplers call this often and must not fork.
read_kb() {
    local pid=$1 field=$2 file=${3:-status} key value _
    KB=0
    [[ -r /proc/$pid/$file ]] || return 0
    while read -r key value _; do
        if [[ $key == "$field:" ]]; then
            KB=$value
            return 0
        fi
    done 2>/dev/null <"/proc/$pid/$file" || true
}
proc_kb() {
    read_kb "$@"
    echo "$KB"
}

# PG_ALL = the pids of the PostgreSQL cluster: the postmaster and its children (no fork)
pg_all() {
    local children=()
    read -ra children 2>/dev/null <"/proc/$PG_PID/task/$PG_PID/children" || true
    PG_ALL=("$PG_PID" "${children[@]}")
}

# KB = memory of one sampled process: VmRSS; for "cluster" the sum of the PSS of every
# PostgreSQL process (PSS shares the shared buffers out instead of counting them per process)
mem_sample() {
    local pid=$1 total=0 p
    if [[ $pid == cluster ]]; then
        pg_all
        for p in "${PG_ALL[@]}"; do
            read_kb "$p" Pss smaps_rollup
            total=$((total + KB))
        done
        KB=$total
    else
        read_kb "$pid" VmRSS
    fi
}
mem_kb() {
    mem_sample "$1"
    echo "$KB"
}

# sample_rss FILE LABEL=PID…: every 200 ms append one "label kB" line per process; the
# PostgreSQL cluster only every second (summing PSS over its processes is not free)
sample_rss() {
    local file=$1
    shift
    local spec tick=0
    while :; do
        for spec in "$@"; do
            if [[ ${spec#*=} == cluster && $((tick % 5)) -ne 0 ]]; then
                continue
            fi
            mem_sample "${spec#*=}"
            echo "${spec%%=*} $KB"
        done >>"$file"
        tick=$((tick + 1))
        sleep 0.2
    done
}

# CPU ticks (user + system) of one process; for "cluster" every PostgreSQL process, including
# the backends that exited (their time is in the postmaster's cutime and cstime)
cpu_ticks() {
    local pid=$1 total=0 p stat f
    if [[ $pid == cluster ]]; then
        pg_all
        for p in "${PG_ALL[@]}"; do
            total=$((total + $(cpu_ticks "$p")))
        done
        stat=$(cat "/proc/$PG_PID/stat" 2>/dev/null) || stat=""
        if [[ -n $stat ]]; then
            read -ra f <<<"${stat##*) }" # f[0] is field 3 (the name may hold spaces)
            total=$((total + f[13] + f[14]))
        fi
        echo "$total"
        return
    fi
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || stat=""
    if [[ -z $stat ]]; then
        echo 0
        return
    fi
    read -ra f <<<"${stat##*) }"
    echo $((f[11] + f[12])) # utime, stime: fields 14 and 15
}

# busy CPU ticks of the whole machine (user, nice, system, irq, softirq; not idle, iowait, steal)
machine_ticks() {
    local _cpu user nice system _idle _iowait irq softirq _
    read -r _cpu user nice system _idle _iowait irq softirq _ </proc/stat
    echo $((user + nice + system + irq + softirq))
}

# ---------------------------------------------------------------------------------------------
# API helpers
# ---------------------------------------------------------------------------------------------

# api METHOD URL [TOKEN] [BODY]: print the body; die unless the status is 2xx
api() {
    local method=$1 url=$2 token=${3:-} body=${4:-} hdrs=() code
    hdrs=(-H 'content-type: application/json')
    [[ -n $token ]] && hdrs+=(-H "authorization: Bearer $token")
    local data=()
    [[ -n $body ]] && data=(--data "$body")
    code=$(curl -s -o "$TMP/api.out" -w '%{http_code}' --max-time 10 -X "$method" "${hdrs[@]}" "${data[@]}" "$url") ||
        die "$method $url: curl failed"
    [[ $code == 2* ]] || die "$method $url answered $code: $(head -c 500 "$TMP/api.out")"
    cat "$TMP/api.out"
}

# Every sign-up and login hashes a password (argon2id, 19 MiB), which shows in the RSS of the
# process doing it; HASHES counts them per mode so the report can say how many there were.
declare -A TOKENS TOKEN_US HASHES

# signup BASE MODE EMAIL: sets USER_ID and TOKEN
signup() {
    local base=$1 mode=$2 email=$3 json
    json=$(api POST "$base/api/auth/signup" "" "{\"name\":\"Bench\",\"email\":\"$email\",\"password\":\"$PASSWORD\"}")
    USER_ID=$(jq -r '.user.id' <<<"$json")
    TOKEN=$(jq -r '.access_token' <<<"$json")
    [[ -n $USER_ID && $USER_ID != null && -n $TOKEN && $TOKEN != null ]] || die "unexpected signup answer: $json"
    TOKENS[$email]=$TOKEN
    TOKEN_US[$email]=$(now_us)
    HASHES[$mode]=$((${HASHES[$mode]:-0} + 1))
}

# token_for BASE MODE EMAIL: sets TOKEN to a token of that user that outlives the next run
# (access tokens live 15 minutes): the one we have, or a new one from a login
token_for() {
    local base=$1 mode=$2 email=$3 now max_age json
    now=$(now_us)
    max_age=$(((840 - $(duration_secs "$DURATION")) * 1000000))
    if [[ -z ${TOKENS[$email]:-} || $((now - ${TOKEN_US[$email]:-0})) -gt $max_age ]]; then
        json=$(api POST "$base/api/auth/login" "" "{\"email\":\"$email\",\"password\":\"$PASSWORD\"}")
        TOKENS[$email]=$(jq -r '.access_token' <<<"$json")
        [[ -n ${TOKENS[$email]} && ${TOKENS[$email]} != null ]] || die "unexpected login answer: $json"
        TOKEN_US[$email]=$now
        HASHES[$mode]=$((${HASHES[$mode]:-0} + 1))
        log "logged in $email again (token older than $((max_age / 1000000)) s)"
    fi
    TOKEN=${TOKENS[$email]}
}

# seed BASE MODE: sign up the seeded user and create SEED_TASKS tasks, and the user the create
# scenario writes to (so the seeded user's list stays at SEED_TASKS tasks); sets SEED_EMAIL,
# SEED_USER, SEED_IDS (comma-separated), SEED_ID (one of them), CREATE_EMAIL and CREATE_USER
seed() {
    local base=$1 mode=$2 i id ids=() n
    SEED_EMAIL="seed-$mode-$$-$RANDOM@bench.example.com"
    signup "$base" "$mode" "$SEED_EMAIL"
    SEED_USER=$USER_ID
    for ((i = 1; i <= SEED_TASKS; i++)); do
        id=$(api POST "$base/api/$SEED_USER/tasks" "$TOKEN" "{\"title\":\"seed task $i\"}" | jq -r '.id')
        ids+=("$id")
    done
    SEED_IDS=$(
        IFS=,
        echo "${ids[*]}"
    )
    SEED_ID=${ids[0]}
    n=$(api GET "$base/api/$SEED_USER/tasks?limit=20" "$TOKEN" | jq '.tasks | length')
    [[ $n == 20 ]] || die "the seeded list returns $n tasks, expected 20"
    CREATE_EMAIL="create-$mode-$$-$RANDOM@bench.example.com"
    signup "$base" "$mode" "$CREATE_EMAIL"
    CREATE_USER=$USER_ID
    log "seeded user $SEED_USER with $SEED_TASKS tasks (list returns $n); create user $CREATE_USER"
}

# ---------------------------------------------------------------------------------------------
# one wrk run
# ---------------------------------------------------------------------------------------------

# wrk output value in ms ("310.00us", "1.20ms", "2.00s", "1.00m")
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else printf "%s", v
    }'
}

# run_wrk MODE TARGET SCENARIO CONNS BASE_URL LABEL=PID… : one wrk run; appends a line to
# RESULTS. The Lua scripts read BENCH_TOKEN, BENCH_USER, BENCH_TASK_ID(S) from the environment.
# The LABEL=PID processes are sampled for memory and CPU ("postgres=cluster": the cluster).
run_wrk() {
    local mode=$1 target=$2 scenario=$3 conns=$4 base=$5
    shift 5
    local specs=("$@") spec
    local name="$mode-$target-$scenario-c$conns"
    local raw="$OUT/$name.txt" samples="$OUT/$name.rss" cpufile="$TMP/wrk-cpu"
    : >"$samples"

    log "wrk $name: -t$THREADS -c$conns -d$DURATION $base"
    sample_rss "$samples" "${specs[@]}" &
    local sampler=$!
    PIDS+=("$sampler")
    local half
    half=$(($(duration_secs "$DURATION") / 2))
    (
        sleep "$half"
        # the second frame: its %CPU covers the second between the two
        top -b -n2 -d1 -w 200 | awk '/^top -/ { n++ } n == 2' | head -n 25
    ) >"$OUT/$name.top" 2>&1 &
    local topper=$!
    PIDS+=("$topper")

    local -A ticks0
    local t0 t1 clk
    clk=$(getconf CLK_TCK)
    for spec in "${specs[@]}"; do
        ticks0[$spec]=$(cpu_ticks "${spec#*=}")
    done
    local machine0 machine1
    machine0=$(machine_ticks)
    t0=$(now_us)
    local TIMEFORMAT='%U %S'
    if ! { time wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$BENCH_DIR/$scenario.lua" \
        "$base" >"$raw" 2>&1; } 2>"$cpufile"; then
        cat "$raw" >&2
        die "wrk failed for $name"
    fi
    t1=$(now_us)
    machine1=$(machine_ticks)
    # CPU of the sampled processes (from /proc) and of wrk itself (from bash's time)
    local wall_s flotilla_ticks=0 pg_cpu="–" cpu_detail="" d pct
    wall_s=$(awk -v us="$((t1 - t0))" 'BEGIN { printf "%.3f", us / 1e6 }')
    for spec in "${specs[@]}"; do
        d=$(($(cpu_ticks "${spec#*=}") - ${ticks0[$spec]}))
        pct=$(awk -v d="$d" -v clk="$clk" -v w="$wall_s" 'BEGIN { printf "%.0f", 100 * d / clk / w }')
        cpu_detail+="${spec%%=*}=$pct "
        if [[ ${spec#*=} == cluster ]]; then
            pg_cpu=$pct
        else
            flotilla_ticks=$((flotilla_ticks + d))
        fi
    done
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    forget_pid "$sampler"
    wait "$topper" 2>/dev/null || true
    forget_pid "$topper"

    # parse the wrk output
    local rps requests p50 p99 non2xx lua_non2xx sock statuses
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$raw")
    requests=$(awk '/ requests in / { print $1 }' "$raw")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$raw")
    non2xx=${non2xx:-0}
    lua_non2xx=$(awk '/^lua_non2xx:/ { print $2 }' "$raw")
    lua_non2xx=${lua_non2xx:-0}
    # the Lua count includes 1xx/3xx, which wrk does not count: take the larger
    [[ $lua_non2xx -gt $non2xx ]] && non2xx=$lua_non2xx
    sock=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$raw")
    sock=${sock:-0}
    statuses=$(awk '/^lua_status:/ { sub(/^lua_status: */, ""); print }' "$raw")
    [[ -n $rps && -n $requests && -n $p50 && -n $p99 ]] || {
        cat "$raw" >&2
        die "could not parse the wrk output of $name"
    }

    local flotilla_cpu wrk_cpu us_per_req peaks
    flotilla_cpu=$(awk -v d="$flotilla_ticks" -v clk="$clk" -v w="$wall_s" 'BEGIN { printf "%.0f", 100 * d / clk / w }')
    us_per_req=$(awk -v d="$flotilla_ticks" -v clk="$clk" -v n="$requests" 'BEGIN { printf "%.0f", (n > 0) ? 1e6 * d / clk / n : 0 }')
    wrk_cpu=$(awk -v w="$wall_s" '{ printf "%.0f", 100 * ($1 + $2) / w }' "$cpufile")
    # the rest of the machine's busy CPU: other processes (the machine may be shared) and
    # interrupt work not charged to a process
    local other_cpu
    other_cpu=$(awk -v d="$((machine1 - machine0))" -v clk="$clk" -v w="$wall_s" -v f="$flotilla_cpu" -v p="$pg_cpu" -v k="$wrk_cpu" \
        'BEGIN { o = 100 * d / clk / w - f - (p == "–" ? 0 : p) - k; printf "%.0f", (o < 0) ? 0 : o }')
    peaks=$(awk '{ if ($2 > max[$1]) max[$1] = $2 } END { for (k in max) printf "%s=%d ", k, max[k] }' "$samples")

    # columns: 1 mode 2 target 3 scenario 4 conns 5 rps 6 p50 7 p99 8 non2xx 9 socket
    # 10 errors 11 statuses 12 flotilla CPU % 13 wrk CPU % 14 postgres CPU % 15 flotilla CPU
    # µs/request 16 CPU % per process 17 peak memory kB per process 18 requests 19 other CPU %
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$mode" "$target" "$scenario" "$conns" "$rps" "$p50" "$p99" "$non2xx" "$sock" \
        "$((non2xx + sock))" "${statuses:-none}" "$flotilla_cpu" "$wrk_cpu" "$pg_cpu" "$us_per_req" \
        "${cpu_detail% }" "${peaks% }" "$requests" "$other_cpu" >>"$RESULTS"
    log "  $rps req/s  p50 ${p50} ms  p99 ${p99} ms  errors $((non2xx + sock)) (non-2xx $non2xx: ${statuses:-none}; socket $sock)"
    log "  CPU %: ${cpu_detail}wrk=$wrk_cpu other=$other_cpu (flotilla ${us_per_req} µs/request)  peak kB: ${peaks% }"
}

# scenarios MODE TARGET BASE AUTH_BASE "SCENARIO…" LABEL=PID…: every scenario × every
# concurrency (chat: CHAT_CONNECTIONS); create writes to CREATE_USER, the others read and
# toggle SEED_USER's tasks (chat only reads them, and writes to the assistant's database)
scenarios() {
    local mode=$1 target=$2 base=$3 auth_base=$4 wanted=$5
    shift 5
    local scenario conns conns_list
    for scenario in $wanted; do
        conns_list=$CONNECTIONS
        [[ $scenario == chat ]] && conns_list=$CHAT_CONNECTIONS
        for conns in $conns_list; do
            if [[ $scenario == create ]]; then
                token_for "$auth_base" "$mode" "$CREATE_EMAIL"
                BENCH_USER=$CREATE_USER BENCH_TOKEN=$TOKEN run_wrk "$mode" "$target" "$scenario" "$conns" "$base" "$@"
            else
                token_for "$auth_base" "$mode" "$SEED_EMAIL"
                BENCH_USER=$SEED_USER BENCH_TOKEN=$TOKEN BENCH_TASK_ID=$SEED_ID BENCH_TASK_IDS=$SEED_IDS \
                    run_wrk "$mode" "$target" "$scenario" "$conns" "$base" "$@"
            fi
        done
    done
}

# memory snapshots per MODE/LABEL: MEM[MODE/LABEL/start|seeded|peak|hwm|probe] in kB
declare -A MEM
snapshot() {
    local mode=$1 what=$2 spec
    shift 2
    for spec in "$@"; do
        MEM[$mode/${spec%%=*}/$what]=$(mem_kb "${spec#*=}")
    done
}
# after the load: the peak of the samples of every run of MODE, and VmHWM
record_peaks() {
    local mode=$1 spec label pid
    shift
    for spec in "$@"; do
        label=${spec%%=*}
        pid=${spec#*=}
        MEM[$mode/$label/peak]=$(cat "$OUT/$mode"-*.rss 2>/dev/null |
            awk -v l="$label" '$1 == l && $2 > m { m = $2 } END { print m + 0 }')
        if [[ $pid == cluster ]]; then
            MEM[$mode/$label/hwm]=""
        else
            MEM[$mode/$label/hwm]=$(proc_kb "$pid" VmHWM)
        fi
    done
}

# signup_probe BASE MODE LABEL PID: PROBE_SIGNUPS sign-ups one after the other, then the RSS of
# the process that hashed the passwords (shows what the argon2id memory does to RSS)
PROBE_SIGNUPS=10
signup_probe() {
    local base=$1 mode=$2 label=$3 pid=$4 i
    for ((i = 1; i <= PROBE_SIGNUPS; i++)); do
        signup "$base" "$mode-probe" "probe-$mode-$i-$$-$RANDOM@bench.example.com"
    done
    MEM[$mode/$label/probe]=$(mem_kb "$pid")
    log "$label RSS after $PROBE_SIGNUPS more sign-ups: ${MEM[$mode/$label/probe]} kB"
}

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT" "$ROOT/docs"
rm -f "$OUT"/*.txt "$OUT"/*.rss "$OUT"/*.top "$OUT"/*.log "$OUT"/results.tsv
TMP=$(mktemp -d /tmp/flotilla-bench.XXXXXX)
chmod 711 "$TMP" # PostgreSQL (another user) needs to reach its directory inside
: >"$RESULTS"

COMMAND="QUICK=$QUICK DURATION=$DURATION CONNECTIONS=\"$CONNECTIONS\" THREADS=$THREADS bench/run.sh"
log "$COMMAND"
need_tools

log "cargo build --release"
cargo build --release
BIN_BYTES=$(stat -c %s "$BIN")
BIN_MIB=$(awk -v b="$BIN_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
log "target/release/flotilla: $BIN_BYTES bytes ($BIN_MIB MiB)"
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A READY

# --- embedded mode ---------------------------------------------------------------------------
log "embedded mode"
EMB_PORT=$(free_port)
EMB_BASE=http://127.0.0.1:$EMB_PORT
start_flotilla embedded \
    FLOTILLA_DATA_DIR="$TMP/embedded-data" FLOTILLA_LISTEN="127.0.0.1:$EMB_PORT" \
    FLOTILLA_RATE_LIMIT_PER_IP=0 FLOTILLA_RATE_LIMIT_PER_USER=0
EMB_PID=$STARTED_PID
READY[embedded]=$(wait_ready embedded "$EMB_PID" "$EMB_BASE/health" "$STARTED_US")
log "embedded ready (/health 200) after ${READY[embedded]} ms"
EMB_SPECS=("flotilla=$EMB_PID")

snapshot embedded start "${EMB_SPECS[@]}"
seed "$EMB_BASE" embedded
snapshot embedded seeded "${EMB_SPECS[@]}"
scenarios embedded gateway "$EMB_BASE" "$EMB_BASE" "create list get complete chat" "${EMB_SPECS[@]}"
record_peaks embedded "${EMB_SPECS[@]}"
signup_probe "$EMB_BASE" embedded flotilla "$EMB_PID"
stop_pid "$EMB_PID"

# the same create runs with the binary from before the event bus (no outbox, no audit)
if [[ -n $BASELINE_BIN ]]; then
    [[ -x $BASELINE_BIN ]] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"
    log "embedded mode, baseline binary $BASELINE_SOURCE"
    BASE_PORT=$(free_port)
    RUN_BIN=$BASELINE_BIN start_flotilla embedded-baseline \
        FLOTILLA_DATA_DIR="$TMP/baseline-data" FLOTILLA_LISTEN="127.0.0.1:$BASE_PORT" \
        FLOTILLA_RATE_LIMIT_PER_IP=0 FLOTILLA_RATE_LIMIT_PER_USER=0
    BASE_PID=$STARTED_PID
    wait_ready embedded-baseline "$BASE_PID" "http://127.0.0.1:$BASE_PORT/health" "$STARTED_US" >/dev/null
    seed "http://127.0.0.1:$BASE_PORT" embedded-baseline
    scenarios embedded-baseline gateway "http://127.0.0.1:$BASE_PORT" "http://127.0.0.1:$BASE_PORT" create "flotilla=$BASE_PID"
    stop_pid "$BASE_PID"
fi

# --- distributed mode ------------------------------------------------------------------------
log "distributed mode: starting a throwaway PostgreSQL"
PG_PORT=$(free_port)
mkdir -p "$TMP/pg"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$TMP/pg"; fi
PG_DATA=$TMP/pg/data
as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >"$OUT/distributed-initdb.log" 2>&1 ||
    die "initdb failed (see bench/out/distributed-initdb.log)"
PG_STARTED=1
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$TMP/pg/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$TMP/pg -c max_connections=200" \
    start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$TMP/pg/postgres.log")"
PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")
for db in accounts tasks audit assistant baseline_accounts baseline_tasks; do
    "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt -c "CREATE DATABASE $db" >/dev/null
done
PG_SETTINGS=$("$PG_BIN/psql" -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -F= \
    -c "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','shared_buffers','max_connections') ORDER BY name" |
    tr '\n' ' ')
PG_VERSION=$("$PG_BIN/postgres" --version)
log "PostgreSQL on port $PG_PORT (pid $PG_PID): $PG_SETTINGS"

# the event bus: accounts and tasks publish to NATS JetStream in distributed mode (binaries from
# before the event bus ignore FLOTILLA_NATS_URL)
NATS_VARS=()
NATS_PID=""
if command -v "$NATS_BIN" >/dev/null; then
    NATS_PORT=$(free_port)
    mkdir -p "$TMP/nats"
    start_us=$(now_us)
    "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/nats/store" >"$OUT/distributed-nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    deadline=$((start_us + 30000000))
    until grep -q "Server is ready" "$OUT/distributed-nats.log" 2>/dev/null; do
        kill -0 "$NATS_PID" 2>/dev/null || die "nats-server exited (see bench/out/distributed-nats.log)"
        [[ $(now_us) -lt $deadline ]] || die "nats-server not ready after 30 s (see bench/out/distributed-nats.log)"
        sleep 0.01
    done
    READY[nats]=$((($(now_us) - start_us) / 1000))
    NATS_VERSION=$("$NATS_BIN" --version 2>&1 | head -n 1 | tr -d :)
    NATS_VARS=(FLOTILLA_NATS_URL="nats://127.0.0.1:$NATS_PORT")
    log "$NATS_VERSION with JetStream on port $NATS_PORT (pid $NATS_PID), ready after ${READY[nats]} ms"
else
    NATS_VERSION=""
    log "WARNING: $NATS_BIN not found: starting the services without FLOTILLA_NATS_URL (needed once they publish events; Debian: apt-get install nats-server)"
fi

ACC_PORT=$(free_port)
TASKS_PORT=$(free_port)
AUDIT_PORT=$(free_port)
GW_PORT=$(free_port)
ASSIST_PORT=$(free_port)
ASSIST_BASE=http://127.0.0.1:$ASSIST_PORT
ACC_BASE=http://127.0.0.1:$ACC_PORT
AUDIT_BASE=http://127.0.0.1:$AUDIT_PORT
TASKS_BASE=http://127.0.0.1:$TASKS_PORT
GW_BASE=http://127.0.0.1:$GW_PORT

start_flotilla distributed-accounts FLOTILLA_LISTEN="127.0.0.1:$ACC_PORT" FLOTILLA_DB_MAX_CONNECTIONS=20 \
    FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/accounts" "${NATS_VARS[@]}" -- accounts
ACC_PID=$STARTED_PID
READY[accounts]=$(wait_ready distributed-accounts "$ACC_PID" "$ACC_BASE/ready" "$STARTED_US")
log "accounts ready (/ready 200) after ${READY[accounts]} ms"

start_flotilla distributed-tasks FLOTILLA_LISTEN="127.0.0.1:$TASKS_PORT" FLOTILLA_DB_MAX_CONNECTIONS=20 \
    FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/tasks" FLOTILLA_ACCOUNTS_URL="$ACC_BASE" \
    "${NATS_VARS[@]}" -- tasks
TASKS_PID=$STARTED_PID
READY[tasks]=$(wait_ready distributed-tasks "$TASKS_PID" "$TASKS_BASE/ready" "$STARTED_US")
log "tasks ready (/ready 200) after ${READY[tasks]} ms"

# audit consumes every event (the create benchmark therefore includes its work)
start_flotilla distributed-audit FLOTILLA_LISTEN="127.0.0.1:$AUDIT_PORT" FLOTILLA_DB_MAX_CONNECTIONS=20 \
    FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/audit" FLOTILLA_ACCOUNTS_URL="$ACC_BASE" \
    "${NATS_VARS[@]}" -- audit
AUDIT_PID=$STARTED_PID
READY[audit]=$(wait_ready distributed-audit "$AUDIT_PID" "$AUDIT_BASE/ready" "$STARTED_US")
log "audit ready (/ready 200) after ${READY[audit]} ms"

# the assistant: chat turns call the tasks service over HTTP as the user (rules provider)
start_flotilla distributed-assistant FLOTILLA_LISTEN="127.0.0.1:$ASSIST_PORT" FLOTILLA_DB_MAX_CONNECTIONS=20 \
    FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/assistant" FLOTILLA_ACCOUNTS_URL="$ACC_BASE" \
    FLOTILLA_TASKS_URL="$TASKS_BASE" "${NATS_VARS[@]}" -- assistant
ASSIST_PID=$STARTED_PID
READY[assistant]=$(wait_ready distributed-assistant "$ASSIST_PID" "$ASSIST_BASE/ready" "$STARTED_US")
log "assistant ready (/ready 200) after ${READY[assistant]} ms"

start_flotilla distributed-gateway FLOTILLA_LISTEN="127.0.0.1:$GW_PORT" FLOTILLA_DB_MAX_CONNECTIONS=20 \
    FLOTILLA_ACCOUNTS_URL="$ACC_BASE" FLOTILLA_TASKS_URL="$TASKS_BASE" FLOTILLA_AUDIT_URL="$AUDIT_BASE" \
    FLOTILLA_ASSISTANT_URL="$ASSIST_BASE" FLOTILLA_RATE_LIMIT_PER_IP=0 FLOTILLA_RATE_LIMIT_PER_USER=0 -- gateway
GW_PID=$STARTED_PID
READY[gateway]=$(wait_ready distributed-gateway "$GW_PID" "$GW_BASE/health" "$STARTED_US")
log "gateway ready (/health 200) after ${READY[gateway]} ms"

DIST_SPECS=("gateway=$GW_PID" "accounts=$ACC_PID" "tasks=$TASKS_PID" "audit=$AUDIT_PID" "assistant=$ASSIST_PID" "postgres=cluster")
if [[ -n $NATS_PID ]]; then DIST_SPECS+=("nats=$NATS_PID"); fi
DIST_LABELS=()
for spec in "${DIST_SPECS[@]}"; do DIST_LABELS+=("${spec%%=*}"); done
snapshot distributed start "${DIST_SPECS[@]}"
seed "$GW_BASE" distributed
snapshot distributed seeded "${DIST_SPECS[@]}"
scenarios distributed gateway "$GW_BASE" "$GW_BASE" "create list get complete chat" "${DIST_SPECS[@]}"
scenarios distributed direct "$TASKS_BASE" "$GW_BASE" "list get" "${DIST_SPECS[@]}"
record_peaks distributed "${DIST_SPECS[@]}"
signup_probe "$GW_BASE" distributed accounts "$ACC_PID"

# the baseline binary (from before the event bus) in distributed mode: accounts, tasks and the
# gateway on the same PostgreSQL cluster (databases of their own), no NATS, no audit
if [[ -n $BASELINE_BIN ]]; then
    log "distributed mode, baseline binary $BASELINE_SOURCE"
    for pid in "$GW_PID" "$ASSIST_PID" "$AUDIT_PID" "$TASKS_PID" "$ACC_PID"; do stop_pid "$pid"; done
    RUN_BIN=$BASELINE_BIN start_flotilla distributed-baseline-accounts FLOTILLA_LISTEN="127.0.0.1:$ACC_PORT" \
        FLOTILLA_DB_MAX_CONNECTIONS=20 FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/baseline_accounts" -- accounts
    B_ACC_PID=$STARTED_PID
    wait_ready distributed-baseline-accounts "$B_ACC_PID" "$ACC_BASE/ready" "$STARTED_US" >/dev/null
    RUN_BIN=$BASELINE_BIN start_flotilla distributed-baseline-tasks FLOTILLA_LISTEN="127.0.0.1:$TASKS_PORT" \
        FLOTILLA_DB_MAX_CONNECTIONS=20 FLOTILLA_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/baseline_tasks" \
        FLOTILLA_ACCOUNTS_URL="$ACC_BASE" -- tasks
    B_TASKS_PID=$STARTED_PID
    wait_ready distributed-baseline-tasks "$B_TASKS_PID" "$TASKS_BASE/ready" "$STARTED_US" >/dev/null
    RUN_BIN=$BASELINE_BIN start_flotilla distributed-baseline-gateway FLOTILLA_LISTEN="127.0.0.1:$GW_PORT" \
        FLOTILLA_DB_MAX_CONNECTIONS=20 FLOTILLA_ACCOUNTS_URL="$ACC_BASE" FLOTILLA_TASKS_URL="$TASKS_BASE" \
        FLOTILLA_RATE_LIMIT_PER_IP=0 FLOTILLA_RATE_LIMIT_PER_USER=0 -- gateway
    B_GW_PID=$STARTED_PID
    wait_ready distributed-baseline-gateway "$B_GW_PID" "$GW_BASE/health" "$STARTED_US" >/dev/null
    seed "$GW_BASE" distributed-baseline
    scenarios distributed-baseline gateway "$GW_BASE" "$GW_BASE" create \
        "gateway=$B_GW_PID" "accounts=$B_ACC_PID" "tasks=$B_TASKS_PID" "postgres=cluster"
fi

# what the servers logged at warn and above (JSON lines), counted by process, target and message
SERVER_LOGS=("$OUT"/embedded.log "$OUT"/distributed-accounts.log "$OUT"/distributed-tasks.log "$OUT"/distributed-audit.log "$OUT"/distributed-assistant.log "$OUT"/distributed-gateway.log)
LOG_SUMMARY=$(for f in "${SERVER_LOGS[@]}"; do
    [[ -r $f ]] || continue
    grep '^{' "$f" | jq -r --arg p "$(basename "$f" .log)" \
        'select(.level == "WARN" or .level == "ERROR") | "\($p)\t\(.level)\t\(.target)\t\(.message // .fields.message // "")"' 2>/dev/null || true
done | sort | uniq -c | sort -rn | head -n 10)
LOG_LINES=$(awk '{ s += $1 } END { print s + 0 }' <<<"$LOG_SUMMARY")

# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
log "writing docs/benchmarks.md"

mib() { awk -v k="${1:-}" 'BEGIN { if (k == "") print "–"; else printf "%.1f", k / 1024 }'; }
# one field of a result: res MODE TARGET SCENARIO CONNS COLUMN (see run_wrk for the columns)
res() {
    awk -F'\t' -v m="$1" -v t="$2" -v s="$3" -v c="$4" -v col="$5" \
        '$1 == m && $2 == t && $3 == s && $4 == c { v = $col } END { print v }' "$RESULTS"
}

embedded_table() {
    echo "| scenario | connections | req/s | p50 ms | p99 ms | errors | non-2xx by status | flotilla CPU % | flotilla CPU µs/req | wrk CPU % | other CPU % | peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    awk -F'\t' '$1 == "embedded" {
        rss = $17; sub(/.*flotilla=/, "", rss); sub(/ .*/, "", rss)
        printf "| %s | %s | %s | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %.1f |\n", $3, $4, $5, $6, $7, $10, $11, $12, $15, $13, $19, rss / 1024
    }' "$RESULTS"
}

distributed_table() {
    local target=$1
    local labels="${DIST_LABELS[*]}"
    echo "| scenario | connections | req/s | p50 ms | p99 ms | errors | non-2xx by status | CPU % ${labels// / \/ } / wrk / other | flotilla CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|---|---|---:|"
    awk -F'\t' -v t="$target" -v labels="$labels" '$1 == "distributed" && $2 == t {
        split($16, parts, " ")
        for (i in parts) { split(parts[i], kv, "="); cpu[kv[1]] = kv[2] }
        n = split(labels, l, " "); shares = ""
        for (i = 1; i <= n; i++) shares = shares cpu[l[i]] " / "
        printf "| %s | %s | %s | %.2f | %.2f | %s | %s | %s%s / %s | %s |\n", $3, $4, $5, $6, $7, $10, $11,
            shares, $13, $19, $15
    }' "$RESULTS"
}

target_row() {
    # target_row WHAT WANTED MEASURED MET(1, 0, or "" for not measured)
    local verdict
    case $4 in
        1) verdict="**met**" ;;
        0) verdict="**missed**" ;;
        *) verdict="not measured" ;;
    esac
    echo "| $1 | $2 | $3 | $verdict |"
}

le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "" && a + 0 <= b + 0) ? 1 : 0 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "" && a + 0 >= b + 0) ? 1 : 0 }'; }

scenario_targets() {
    # scenario_targets SCENARIO MIN_RPS: rows for req/s, p99 and errors at 100 connections
    local s=$1 min=$2 rps p99 err
    rps=$(res embedded gateway "$s" 100 5)
    p99=$(res embedded gateway "$s" 100 7)
    err=$(res embedded gateway "$s" 100 10)
    if [[ -z $rps ]]; then
        target_row "$s req/s at 100 connections" "≥ $min" "–" ""
        target_row "$s p99 at 100 connections" "≤ 25 ms" "–" ""
        target_row "$s errors at 100 connections" "0" "–" ""
        return
    fi
    target_row "$s req/s at 100 connections" "≥ $min" "$rps" "$(ge "$rps" "$min")"
    target_row "$s p99 at 100 connections" "≤ 25 ms" "$(printf '%.2f ms' "$p99")" "$(le "$p99" 25)"
    target_row "$s errors at 100 connections" "0" "$err ($(res embedded gateway "$s" 100 11))" "$([[ $err == 0 ]] && echo 1 || echo 0)"
}

added_latency() {
    echo "| scenario | connections | gateway req/s | direct req/s | gateway p50 ms | direct p50 ms | added p50 ms | gateway p99 ms | direct p99 ms | added p99 ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local s c
    for s in list get; do
        for c in $CONNECTIONS; do
            awk -v s="$s" -v c="$c" -v grps="$(res distributed gateway "$s" "$c" 5)" -v drps="$(res distributed direct "$s" "$c" 5)" \
                -v g50="$(res distributed gateway "$s" "$c" 6)" -v d50="$(res distributed direct "$s" "$c" 6)" \
                -v g99="$(res distributed gateway "$s" "$c" 7)" -v d99="$(res distributed direct "$s" "$c" 7)" \
                'BEGIN { printf "| %s | %s | %s | %s | %.2f | %.2f | %+.2f | %.2f | %.2f | %+.2f |\n", s, c, grps, drps, g50, d50, g50 - d50, g99, d99, g99 - d99 }'
        done
    done
}

events_cost() {
    echo "| mode | connections | create req/s without events | with events | change | p99 ms without / with | errors without / with | verdict (≤ 25 % lower) |"
    echo "|---|---:|---:|---:|---:|---|---|---|"
    local m c without with verdict
    for m in embedded distributed; do
        for c in $CONNECTIONS; do
            without=$(res "$m-baseline" gateway create "$c" 5)
            with=$(res "$m" gateway create "$c" 5)
            [[ -n $without && -n $with ]] || continue
            verdict=$(awk -v a="$without" -v b="$with" 'BEGIN { print (b >= 0.75 * a) ? "**met**" : "**missed**" }')
            awk -v m="$m" -v c="$c" -v a="$without" -v b="$with" -v v="$verdict" \
                -v pa="$(res "$m-baseline" gateway create "$c" 7)" -v pb="$(res "$m" gateway create "$c" 7)" \
                -v ea="$(res "$m-baseline" gateway create "$c" 10)" -v eb="$(res "$m" gateway create "$c" 10)" \
                'BEGIN { printf "| %s | %s | %s | %s | %+.1f %% | %.2f / %.2f | %s / %s | %s |\n", m, c, a, b, 100 * (b - a) / a, pa, pb, ea, eb, v }'
        done
    done
}

memory_row() {
    # memory_row MODE LABEL NAME READY CHECK
    local m=$1 l=$2
    echo "| $3 | $4 | $5 | $(mib "${MEM[$m/$l/start]}") | $(mib "${MEM[$m/$l/seeded]}") | $(mib "${MEM[$m/$l/peak]}") | $(mib "${MEM[$m/$l/hwm]}") | $(mib "${MEM[$m/$l/probe]:-}") |"
}
memory_header() {
    echo "| process | ready after ms | check | RSS at start MiB | after seeding MiB | peak under load MiB | VmHWM MiB | after $PROBE_SIGNUPS more sign-ups MiB |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|"
}

EMB_PEAK_MIB=$(mib "${MEM[embedded/flotilla/peak]}")
TOTAL_ERRORS=$(awk -F'\t' '{ s += $10 } END { print s + 0 }' "$RESULTS")
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
RUSTC=$(rustc --version)
WRK_VERSION=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')
# what was measured: BENCH_SOURCE overrides (e.g. when run from an exported copy of a commit)
if [[ -z ${BENCH_SOURCE:-} ]]; then
    if BENCH_SOURCE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
        BENCH_SOURCE="commit $BENCH_SOURCE"
        if git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q .; then
            BENCH_SOURCE="$BENCH_SOURCE with uncommitted changes"
        fi
    else
        BENCH_SOURCE="unknown (not a git checkout)"
    fi
fi

# the image size is measured by .ci/deploy-checks (RECORD_BENCHMARKS=1) into the same file: keep it
IMAGE_SECTION=""
if [[ -r $REPORT ]]; then
    IMAGE_SECTION=$(sed -n '/^## Container image/,$p' "$REPORT")
fi

{
    echo "# Benchmarks"
    echo
    echo "Produced by \`bench/run.sh\` (see [bench/README.md](../bench/README.md)); do not edit by hand."
    echo
    if [[ $QUICK == 1 ]]; then
        echo "> **QUICK mode:** short runs to smoke-test the harness; do not compare these figures."
        echo
    fi
    echo "- **Date:** $(date -u)"
    echo "- **Machine:** $(nproc) CPUs ($CPU_MODEL), $MEM_TOTAL memory, Linux $(uname -r)"
    echo "- **Toolchain:** $RUSTC; load generator $WRK_VERSION; $PG_VERSION"
    echo "- **Source:** $BENCH_SOURCE"
    echo "- **Command:** \`$COMMAND\`"
    echo "- **Load average before the first run:** $LOADAVG (the machine may be shared: see the *other CPU* columns)"
    echo "- **Release binary:** \`target/release/flotilla\` is $BIN_BYTES bytes ($BIN_MIB MiB)"
    echo
    echo "Each run is \`wrk -t$THREADS -c<connections> -d$DURATION --latency\` with one scenario:"
    echo
    echo "| scenario | request |"
    echo "|---|---|"
    echo "| create | \`POST /api/{user}/tasks\` \`{\"title\":\"bench task\"}\` (a user of its own, so the list below stays put) |"
    echo "| list | \`GET /api/{user}/tasks?limit=20\` (the user has $SEED_TASKS tasks; 20 returned) |"
    echo "| get | \`GET /api/{user}/tasks/{id}\` |"
    echo "| complete | \`PATCH /api/{user}/tasks/{id}/complete\` (toggle, no \`If-Match\`), round-robin over the $SEED_TASKS tasks |"
    echo "| chat | \`POST /api/{user}/chat\` with the rules provider, a new conversation per turn, cycling through \"show my tasks\" (a \`list_tasks\` call over the $SEED_TASKS tasks), \"what's left for today?\" (a filtered \`list_tasks\`) and \"hello\" (no tool); every turn stores both messages (at $CHAT_CONNECTIONS connections) |"
    echo
    echo "**How to read this.** wrk runs on the same $(nproc) cores as the server(s) and takes CPU from"
    echo "them; the CPU columns show how the cores were shared (100 % = one core, at most"
    echo "$(($(nproc) * 100)) % in all) and *flotilla CPU µs/req* is the server CPU time per request."
    echo "Rate limits are off (\`FLOTILLA_RATE_LIMIT_PER_IP=0\`, \`FLOTILLA_RATE_LIMIT_PER_USER=0\`):"
    echo "this measures the service, not the limiter. Logs at \`warn\`. Errors = non-2xx responses +"
    echo "socket errors (connect, read, write, timeout). Latencies are wrk's (coordinated omission"
    echo "not corrected). Every run is short and single: expect several percent of noise."
    echo
    echo "Memory is VmRSS sampled every 200 ms. Each sign-up or login hashes a password with"
    echo "argon2id (19 MiB of memory per hash), and that memory can stay resident afterwards, so the"
    echo "harness hashes as few passwords as it can (a login only when a token gets old) — this run:"
    echo "${HASHES[embedded]:-0} in embedded mode, ${HASHES[distributed]:-0} in distributed mode — and then measures"
    echo "the effect on its own: RSS after $PROBE_SIGNUPS more sign-ups, after the load."
    echo
    echo "## Embedded mode"
    echo
    echo "\`flotilla\` (one process, SQLite in a temporary data dir, default pool size)."
    echo
    memory_header
    memory_row embedded flotilla flotilla "${READY[embedded]}" "\`/health\`"
    echo
    embedded_table
    echo
    echo "## Distributed mode"
    echo
    echo "\`flotilla accounts\`, \`flotilla tasks\`, \`flotilla audit\`, \`flotilla assistant\` and \`flotilla gateway\`, each its own process, on a"
    echo "throwaway PostgreSQL cluster (default settings, so \`fsync\` and \`synchronous_commit\` on, plus"
    echo "\`max_connections=200\`; read back: ${PG_SETTINGS% }), \`FLOTILLA_DB_MAX_CONNECTIONS=20\`."
    if [[ -n $NATS_PID ]]; then
        echo "Accounts and tasks publish their events to a throwaway $NATS_VERSION with JetStream"
        echo "(\`FLOTILLA_NATS_URL\`); tasks (recurrence) and audit (every event) consume them."
    else
        echo "No nats-server was found, so the services ran without \`FLOTILLA_NATS_URL\` (no event bus)."
    fi
    echo
    memory_header
    memory_row distributed accounts accounts "${READY[accounts]}" "\`/ready\`"
    memory_row distributed tasks tasks "${READY[tasks]}" "\`/ready\`"
    memory_row distributed audit audit "${READY[audit]}" "\`/ready\`"
    memory_row distributed assistant assistant "${READY[assistant]}" "\`/ready\`"
    memory_row distributed gateway gateway "${READY[gateway]}" "\`/health\`"
    memory_row distributed postgres "postgres (all processes, PSS)" "–" "–"
    if [[ -n $NATS_PID ]]; then
        memory_row distributed nats "nats-server (JetStream)" "${READY[nats]}" "log: Server is ready"
    fi
    echo
    echo "Ready times include the migrations on an empty database. PostgreSQL's memory is the sum"
    echo "of the PSS (proportional set size) of the postmaster and its children, which shares the"
    echo "shared buffers out instead of counting them once per process; sampled once a second."
    echo
    echo "Through the gateway:"
    echo
    distributed_table gateway
    echo
    echo "Direct to the tasks service (same token; tasks verifies it with the keys from accounts):"
    echo
    distributed_table direct
    echo
    echo "### The gateway's added latency"
    echo
    echo "Gateway minus direct, same scenario and concurrency. Under load this includes the"
    echo "gateway's share of the CPU (it competes with tasks, PostgreSQL and wrk for the same cores),"
    echo "so the figure at the lowest concurrency is the closest to the cost of the extra hop."
    echo
    added_latency
    echo
    if [[ -n $BASELINE_BIN ]]; then
        echo "## What the events cost"
        echo
        echo "The create scenario run the same way with a binary built from before the event bus"
        echo "($BASELINE_SOURCE): no outbox row in the create transaction, no relay, no audit consumer,"
        echo "and in distributed mode no NATS (accounts, tasks and the gateway only). The target is a"
        echo "create throughput at most 25 % below the figure without events."
        echo
        events_cost
        echo
    fi
    echo "## Targets"
    echo
    echo "Embedded mode, on this machine, with wrk on the same cores."
    echo
    echo "| target | wanted | measured | verdict |"
    echo "|---|---|---|---|"
    scenario_targets list 15000
    scenario_targets create 5000
    chat_rps=$(res embedded gateway chat 50 5)
    chat_p99=$(res embedded gateway chat 50 7)
    if [[ -n $chat_rps ]]; then
        target_row "chat turns/s at 50 connections (rules provider)" "≥ 2000" "$chat_rps (p99 $(printf '%.2f ms' "$chat_p99"), errors $(res embedded gateway chat 50 10))" "$(ge "$chat_rps" 2000)"
    else
        target_row "chat turns/s at 50 connections (rules provider)" "≥ 2000" "–" ""
    fi
    target_row "peak RSS under load" "≤ 60 MiB" "$EMB_PEAK_MIB MiB (after $PROBE_SIGNUPS more sign-ups: $(mib "${MEM[embedded/flotilla/probe]:-}") MiB)" "$(le "$EMB_PEAK_MIB" 60)"
    target_row "ready (\`/health\` 200)" "≤ 300 ms" "${READY[embedded]} ms" "$(le "${READY[embedded]}" 300)"
    echo
    if [[ -r $BENCH_DIR/limits.md ]]; then
        # hand-written: the profile of the missed targets (bench/profile.sh), dated inside
        echo "## What limits the targets"
        echo
        cat "$BENCH_DIR/limits.md"
        echo
    fi
    echo "## Raw data"
    echo
    echo "The raw wrk outputs (\`<mode>-<target>-<scenario>-c<connections>.txt\`), the memory samples"
    echo "(\`.rss\`), a \`top\` snapshot taken half-way through each run (\`.top\`), the server logs"
    echo "(\`.log\`) and \`results.tsv\` are kept in \`bench/out/\`, which is git-ignored."
    echo "Errors over all runs: $TOTAL_ERRORS."
    echo
    echo "The servers logged $LOG_LINES lines at warn or above (the commonest, by process):"
    echo
    if [[ $LOG_LINES -gt 0 ]]; then
        echo "| lines | process | level | target | message |"
        echo "|---:|---|---|---|---|"
        awk -F'\t' '{ split($1, a, " "); n = a[1]; sub(/^ *[0-9]+ /, "", $1)
            gsub(/\|/, "\\|", $4); printf "| %s | %s | %s | `%s` | %s |\n", n, $1, $2, $3, $4 }' <<<"$LOG_SUMMARY"
    else
        echo "(none)"
    fi
    if [[ -n $IMAGE_SECTION ]]; then
        echo
        echo "$IMAGE_SECTION"
    fi
} >"$REPORT"

log "done: docs/benchmarks.md (errors over all runs $TOTAL_ERRORS; server log lines at warn+: $LOG_LINES)"
