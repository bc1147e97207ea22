#!/usr/bin/env bash
# pushbridge benchmarks: how fast and how lean (issue 6, docs/PERFORMANCE.md).
#
#   bench/run.sh                 the standard set at workers 1 and 2, about 15
#                                minutes on 2 shared cores
#   bench/run.sh --quick         small N, workers 2, about 110 s (cluster is
#                                25 s of it): CI runs it to show
#                                that the benchmark still works (no thresholds
#                                asserted); leaves out unicast-10k, fanout-10k
#                                and fdlimit unless --only names them, and runs
#                                the reference for unicast and fanout only
#   bench/run.sh --big           the idle scenario with as many connections as
#                                the open-file limit allows
#   bench/run.sh --only a,b      only these scenarios (unicast unicast-10k fanout
#                                fanout-10k broadcast http-single http-batch
#                                slow-base slow state-off state tasks-100k
#                                cluster idle logins logins-cluster fdlimit inputs
#                                inputs-e2e unicast-max)
#   bench/run.sh --no-ref        no reference runs (pb-sendref, pb-kafkaref)
#   bench/run.sh --kafka         start one real Kafka broker (KRaft, from
#                                tests/kafka/lib, bench/broker.sh) and run every
#                                scenario against it instead of --dev's
#                                embedded one (as PB_BENCH_BROKERS does with a
#                                broker of your own); stopped at the end
#   bench/run.sh --workers 1,2   the bridge's workers (SPEC 11) to run every
#                                scenario with (PUSHBRIDGE_WORKERS=N), one after
#                                the other per scenario; default 1,2, --quick 2.
#                                Rows and results.json name them (unicast-w2,
#                                "workers":2); the notes give workers 2's frames
#                                per bridge CPU-second over workers 1's. The
#                                reference runs once per scenario.
#   bench/run.sh --profile       also sample the bridge with perf (cpu-clock) and
#                                count its syscalls, per scenario, into
#                                build-bench/profile/
#   bench/run.sh --callgrind     run the bridge under valgrind --tool=callgrind,
#                                collecting only while traffic flows, into
#                                build-bench/profile/ (figures are then slow and
#                                meaningless; the profile is the point; no
#                                reference runs)
#
# Builds Release into build-bench/, then runs each scenario against a fresh
# bridge (--quick: one for all traffic scenarios, one each for idle and logins):
# `pushbridge --dev` (embedded Kafka, auth.mode none) by default, or a
# real broker when PB_BENCH_BROKERS=HOST:PORT is set (a fresh topic and group
# per scenario, so nothing is replayed). pb-loadgen plays the browsers and
# pb-produce the business systems, all on loopback. Prints two tables and
# writes bench/results.json.
#
# Task state and history (issue 10): state-off and state run the unicast
# load (same connections, users and rate) with events that name a task
# (pb-produce --tasks 10), each on a fresh bridge even under --quick:
# state-off with state, history and the rebuild turned off
# (PUSHBRIDGE_STATE_MAX_TASKS_PER_USER=0 PUSHBRIDGE_HISTORY_MAX_EVENTS=0
# PUSHBRIDGE_STATE_LOOKBACK_MS=0), state with the defaults. They run back to
# back, state-off first, and the notes and results.json ("state_cost") give
# state's frames per bridge CPU-second over state-off's, against issue 10's
# target of at most 10 % fewer (ratio >= 0.90). tasks-100k has no clients:
# three fresh bridges (off; state with history off; state and history, the
# defaults; state.max_bytes and history.max_bytes raised to 512 MiB) each take
# 100,000 events to 1,000 users, every event a task of its own (100 per
# user), and it reports RSS growth over off's and the bridge's own state and
# history byte gauges per 100k live tasks, and /stats' task count. --quick
# sends 20,000 events to 200 users and scales the figures to 100k.
#
# Cluster (SPEC 8, issue 11; docs/SCALING.md): cluster-skip and cluster-noskip,
# each on NODES fresh nodes in cluster.mode kafka (3, --quick 2;
# PB_BENCH_CLUSTER_NODES) sharing one broker: node 1's --dev embedded one
# (the others point kafka.brokers at it), or PB_BENCH_BROKERS. pb-loadgen
# spreads the connections (10,000, --quick 1,000; one user each) round-robin
# over nodes 1..NODES-1 (--port P1,P2,...); the last node holds none, so its
# CPU per event consumed is what a node pays for events of users it does not
# hold, measured, not derived. pb-produce sends 10,000 events/s (--quick
# 2,500) to the users round-robin. cluster-skip turns history, state and the
# rebuild off (the key skip applies), cluster-noskip keeps the defaults (it
# does not). Per node: CPU over the traffic, net of its idle rate measured
# just before with every client connected, per event consumed; consumed and
# skipped counts; RSS. The table's frames per CPU-second are per CPU-second
# of all the nodes together. --quick adds about 25 s for the two.
#
# Inputs (SPEC 12, issue 26): pb-inputbench reads one ~300-byte order in each
# kafka.inputs format (envelope, json with a key / literal / field: target,
# JSON behind the Schema Registry prefix, a Debezium outbox row's headers,
# CloudEvents binary and structured) on one core, 1,000,000 times each
# (--quick 100,000) in 5 rounds, the fastest counting, and prints events per
# CPU-second and ns per event against the envelope's (results.json's
# "inputs"). No bridge, no broker: the read step is what differs between
# formats; what follows it is the unicast scenario's. inputs-e2e (not in
# --quick, about 2 minutes) measures it whole: the unicast load (10,000
# connections, 20,000 events/s) on a fresh bridge per format, pb-produce
# --format writing the same data as the envelope (in-envelope), plain JSON
# keyed by user (in-json), JSON keyed by order with the user in a field
# (in-json-field) and CloudEvents binary and structured with the user in
# subject (in-ce-binary, in-ce-structured), each read by its kafka.inputs
# rule (PUSHBRIDGE_KAFKA_INPUTS). No reference runs: the load is unicast's.
#
# Workers (SPEC 11, issue 19): each scenario runs once per --workers value,
# tasks-100k (no clients) once, at the last. Bridge CPU is also split by
# thread (/proc/PID/task/*/stat): the main loop (consumer, hub, store, worker
# 0's connections), the pb-worker-N threads, librdkafka's threads; the
# table's last column gives the three in CPU-seconds.
#
# unicast-max (not in --quick unless --only names it; then 1,000 connections,
# 5,000 and 10,000 events/s): the unicast load, 10,000 connections, at rising
# rates (PB_BENCH_MAX_RATES, default 10000 15000 ... 40000, then by 10,000 to 80000, 100000), 6 s each,
# on one bridge per workers value, until p99 passes 50 ms, anything is lost,
# duplicated or out of order, or less than 97 % of the rate is produced or
# delivered (a failed step is tried once more: the machine is shared). The
# notes give the highest rate that passed, and per step what the bridge (main
# thread, workers), the embedded broker, pb-loadgen and pb-produce took of
# the cores; results.json "unicast_max".
#
# Bridge CPU is read from /proc/PID/stat around each scenario's traffic, so
# the figures are per CPU-second of the bridge and stay comparable on a busy
# machine. Under --dev the embedded broker runs inside the bridge process (the
# "rdk:mock" thread); its CPU is reported apart and left out of "bridge CPU".
#
# Right after the bridge's run of a traffic scenario, pb-sendref (a plain
# single-threaded epoll sender, bench/sendref.c) takes the bridge's place for
# the same pb-loadgen load: same connections, users, targets, rate and
# duration, one send() per frame; for fan-out and broadcast also one writev()
# per connection queue. Its frames per CPU-second are this machine's limit
# for the load, and the second table gives the bridge's figure as a ratio.
# For the scenarios fed through Kafka, pb-kafkaref (bench/kafkaref.c, a
# plain consumer) then takes the bridge's place for the same pb-produce load,
# with no sockets: its p99 ("Kafka p99") is the latency Kafka alone gives on
# this machine, the floor under the bridge's.
#
# Environment: PB_BENCH_BROKERS (real broker), PB_BENCH_PARTITIONS (topic
# partitions with a real broker, default 1), PB_BENCH_KAFKA_PROPERTIES
# (librdkafka properties for the bridge's consumer; default under --dev:
# fetch.wait.max.ms=1, see PERFORMANCE.md), PB_BENCH_BRIDGE (another
# pushbridge binary to measure, e.g. one built from a branch; the bridge is
# then not built here).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build-bench
RESULTS=$ROOT/bench/results.json
BRIDGE_BIN=${PB_BENCH_BRIDGE:-$BUILD/pushbridge}
LOADGEN=$BUILD/bench/pb-loadgen
PRODUCE=$BUILD/bench/pb-produce
SENDREF=$BUILD/bench/pb-sendref
KAFKAREF=$BUILD/bench/pb-kafkaref

MODE=full
BIG=0
ONLY=""
PROFILE=0
CALLGRIND=0
REF=1
START_BROKER=0
WORKERS_LIST=""
ALL_SCENARIOS="unicast unicast-10k fanout fanout-10k broadcast http-single http-batch"
ALL_SCENARIOS+=" slow-base slow state-off state tasks-100k cluster idle logins logins-cluster fdlimit"
ALL_SCENARIOS+=" inputs inputs-e2e"
ALL_SCENARIOS+=" unicast-max"
# The scenarios that name their size keep it; --quick leaves them out.
QUICK_SCENARIOS="unicast fanout broadcast http-single http-batch slow-base slow state-off state"
QUICK_SCENARIOS+=" tasks-100k cluster idle logins inputs"
QUICK_REF="unicast fanout"

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) MODE=quick ;;
    --big) BIG=1 ;;
    --only) [ $# -ge 2 ] || { usage >&2; exit 2; }; ONLY=${2//,/ }; shift ;;
    --profile) PROFILE=1 ;;
    --callgrind) CALLGRIND=1 ;;
    --no-ref) REF=0 ;;
    --kafka) START_BROKER=1 ;;
    --workers) [ $# -ge 2 ] || { usage >&2; exit 2; }; WORKERS_LIST=${2//,/ }; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
SCENARIOS=$ONLY
[ -n "$SCENARIOS" ] || { [ "$MODE" = quick ] && SCENARIOS=$QUICK_SCENARIOS || SCENARIOS=$ALL_SCENARIOS; }
[ "$CALLGRIND" = 1 ] && REF=0
# Every scenario runs once per workers value (SPEC 11), on a bridge started
# with PUSHBRIDGE_WORKERS=N; --quick runs workers 2 only unless told.
[ -n "$WORKERS_LIST" ] || { [ "$MODE" = quick ] && WORKERS_LIST=2 || WORKERS_LIST="1 2"; }
for w in $WORKERS_LIST; do
    case $w in [1-9] | [1-5][0-9] | 6[0-4]) ;; *) echo "bench/run.sh: --workers takes 1..64, not $w" >&2; exit 2 ;; esac
done
FIRST_W=${WORKERS_LIST%% *}
LAST_W=${WORKERS_LIST##* }
W=$FIRST_W   # the workers of the scenario running now
for s in $SCENARIOS; do
    case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "bench/run.sh: no scenario $s" >&2; exit 2 ;; esac
done
# state is compared with state-off: run them back to back, state-off first.
case " $SCENARIOS " in *" state "*)
    case " $SCENARIOS " in *" state-off "*)
        SCENARIOS=$(for s in $SCENARIOS; do
            case $s in state) ;; state-off) echo state-off state ;; *) echo "$s" ;; esac
        done | tr '\n' ' ')
        ;;
    esac
    ;;
esac

WORK=$(mktemp -d /tmp/pb-bench.XXXXXX)
PROFDIR=$BUILD/profile
CLK_TCK=$(getconf CLK_TCK)
RUN_ID=$(date +%s)

# ---- process bookkeeping: everything we start is stopped on exit ----

stop_pid() { # pid [seconds]: TERM, wait up to the bound, then KILL
    local pid=$1 limit=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Only this shell's own background jobs: a PID that has been waited for
# can be reused by someone else's process, a job's cannot.
cleanup() {
    local pid
    # A broker of --kafka first, given the time its controlled shutdown takes.
    [ -z "${BROKER_PID:-}" ] || stop_pid "$BROKER_PID" 35
    for pid in $(jobs -p); do stop_pid "$pid" 5; done
    # Keep the last run's logs and raw outputs for a look after the fact.
    rm -rf "$BUILD/bench-logs"
    mkdir -p "$BUILD" && mv "$WORK" "$BUILD/bench-logs" 2>/dev/null || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

if [ "$START_BROKER" = 1 ]; then
    [ -z "${PB_BENCH_BROKERS:-}" ] || { say "bench/run.sh: --kafka and PB_BENCH_BROKERS both name a broker"; exit 2; }
    say "starting a real Kafka broker (KRaft, tests/kafka/lib)"
    . "$ROOT/bench/broker.sh"
    start_broker "$WORK" || exit 1
    export PB_BENCH_BROKERS=$BROKER_ADDR
    say "broker $PB_BENCH_BROKERS"
fi

# until TRIES×0.1 s have passed: COMMAND... succeeds
wait_until() {
    local tries=$1 i
    shift
    for ((i = 0; i < tries; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# ---- build ----

build() {
    local -a targets=(pb-loadgen pb-produce pb-sendref pb-kafkaref pb-inputbench)
    # With PB_BENCH_BRIDGE the bridge comes from elsewhere: a src/ in the
    # middle of a change must not stop the tools from building.
    [ -n "${PB_BENCH_BRIDGE:-}" ] || targets+=(pushbridge)
    say "building Release into build-bench/ ..."
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPB_TESTS=OFF >"$WORK/cmake.log" 2>&1 &&
        cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" \
            >>"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; exit 1; }
}

# ---- reading the bridge from /proc ----

# utime+stime of a /proc stat file, in ticks (fields after the "(comm)")
stat_ticks() { sed 's/^.*) //' "$1" | awk '{print $12 + $13}'; }
proc_ticks() { stat_ticks "/proc/$1/stat"; }
loop_ticks() { stat_ticks "/proc/$1/task/$1/stat"; }   # the lws loop: main thread
mock_ticks() { # the embedded broker's thread(s), 0 with a real broker
    local t sum=0
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = "rdk:mock" ] && sum=$((sum + $(stat_ticks "$t/stat")))
    done
    echo "$sum"
}
# The bridge's CPU by thread, in ticks: "MAIN WORKERS MOCK REST W1,W2,..."
# MAIN is the main loop (consumer, hub, store, worker 0's connections),
# WORKERS the sum of the pb-worker-N threads (named in src/public/worker.c),
# MOCK the embedded broker, REST librdkafka's own threads and anything else;
# the last field lists each pb-worker-N's ticks by N.
thread_ticks() {
    local pid=$1 t comm ticks main=0 wk=0 mock=0 rest=0
    local -A per=()
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        ticks=$(stat_ticks "$t/stat" 2>/dev/null) || continue
        [ -n "$ticks" ] || continue
        if [ "${t##*/}" = "$pid" ]; then main=$ticks
        elif [[ $comm == pb-worker-* ]]; then wk=$((wk + ticks)); per[${comm#pb-worker-}]=$ticks
        elif [ "$comm" = rdk:mock ]; then mock=$((mock + ticks))
        else rest=$((rest + ticks)); fi
    done
    local list="" k
    for k in $(printf '%s\n' "${!per[@]}" | sort -n); do list+=${list:+,}${per[$k]}; done
    echo "$main $wk $mock $rest ${list:--}"
}
# thread_delta "BEFORE" "AFTER": the same fields, AFTER - BEFORE
thread_delta() {
    local -a a=($1) b=($2)
    local -a la=() lb=() d=()
    IFS=, read -ra la <<<"${a[4]}"; IFS=, read -ra lb <<<"${b[4]}"
    local i
    for i in "${!lb[@]}"; do
        [[ ${lb[i]} =~ ^[0-9]+$ ]] || continue
        d+=($((lb[i] - ${la[i]:-0})))
    done
    local list
    list=$(IFS=,; echo "${d[*]}")
    echo "$((b[0] - a[0])) $((b[1] - a[1])) $((b[2] - a[2])) $((b[3] - a[3])) ${list:--}"
}
user_sys_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# the number after "KEY": in a one-line JSON file (our tools keep keys
# unique), 0 when it is not there
jget() {
    local v
    v=$(grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2)
    echo "${v:-0}"
}
# floating point: calc 'EXPR' (awk)
calc() { awk "BEGIN { v = $1; printf \"%.6g\", v }"; }

# ---- the bridge ----

port_free() { ! (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
pick_port() { # below the ephemeral range, so the loadgen's own ports never collide
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        port_free "$p" && { echo "$p"; return 0; }
    done
    say "no free port found"; exit 1
}

ready() { curl -sf -o /dev/null "http://127.0.0.1:$INT_PORT/readyz"; }

# start_bridge NAME [VAR=value ...]: sets BRIDGE_PID, PUB_PORT, INT_PORT, BOOTSTRAP, TOPIC
start_bridge() {
    local name=$1
    shift
    PUB_PORT=$(pick_port)
    INT_PORT=$(pick_port)
    while [ "$INT_PORT" = "$PUB_PORT" ]; do INT_PORT=$(pick_port); done
    local -a env=(
        PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:$PUB_PORT
        PUSHBRIDGE_LISTEN_INTERNAL=127.0.0.1:$INT_PORT
        PUSHBRIDGE_WS_MAX_CONNECTIONS_PER_USER=100000
        PUSHBRIDGE_WS_MAX_CONNECTIONS=1000000
        PUSHBRIDGE_WORKERS=$W
    )
    BRIDGE_W=$W
    local -a args=()
    if [ -n "${PB_BENCH_BROKERS:-}" ]; then
        TOPIC=pb-bench-$RUN_ID-$name
        BOOTSTRAP=$PB_BENCH_BROKERS
        "$PRODUCE" --brokers "$BOOTSTRAP" --topic "$TOPIC" \
            --create-topic "${PB_BENCH_PARTITIONS:-1}" --count 0 >/dev/null
        env+=(PUSHBRIDGE_KAFKA_BROKERS="$BOOTSTRAP" PUSHBRIDGE_KAFKA_TOPICS="$TOPIC"
            PUSHBRIDGE_KAFKA_GROUP_ID="$TOPIC" PUSHBRIDGE_AUTH_MODE=none)
    else
        TOPIC=pushbridge.events
        args+=(--dev)
    fi
    local props
    props=$(consumer_properties)
    [ -z "$props" ] || env+=(PUSHBRIDGE_KAFKA_PROPERTIES="$props")
    local -a wrap=()
    if [ "$CALLGRIND" = 1 ]; then
        mkdir -p "$PROFDIR"
        wrap=(valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no
            --callgrind-out-file="$PROFDIR/$name.callgrind.%p")
    fi
    BRIDGE_LOG=$WORK/$name.bridge.log
    env "${env[@]}" "$@" "${wrap[@]}" "$BRIDGE_BIN" "${args[@]}" >"$BRIDGE_LOG" 2>&1 &
    BRIDGE_PID=$!
    if ! wait_until 600 ready; then
        say "bridge for $name did not become ready; its log:"
        tail -20 "$WORK/$name.bridge.log" >&2
        exit 1
    fi
    if [ -z "${PB_BENCH_BROKERS:-}" ]; then
        BOOTSTRAP=$(curl -sf "http://127.0.0.1:$INT_PORT/stats" |
            grep -o '"kafka_bootstrap":"[^"]*"' | cut -d'"' -f4)
    fi
}

# The consumer's librdkafka properties, the bridge's and pb-kafkaref's alike.
# The embedded broker answers an empty fetch only after fetch.wait.max.ms,
# even when data arrives meanwhile: under --dev keep it short.
consumer_properties() {
    if [ -n "${PB_BENCH_BROKERS:-}" ]; then
        echo "${PB_BENCH_KAFKA_PROPERTIES:-}"
    else
        echo "${PB_BENCH_KAFKA_PROPERTIES:-fetch.wait.max.ms=1}"
    fi
}

# SIGTERM, and once the bridge logged "stopped" (connections closed, offsets
# committed) SIGKILL: tearing down librdkafka's handles takes another ~2 s
# that no scenario measures.
bridge_stopped() { grep -q ' stopped$' "$BRIDGE_LOG"; }
stop_bridge() {
    [ -n "${BRIDGE_PID:-}" ] || return 0
    kill -TERM "$BRIDGE_PID" 2>/dev/null || true
    wait_until 200 bridge_stopped || say "bridge did not log 'stopped' within 20 s"
    # valgrind writes its profile only when the bridge exits by itself
    stop_pid "$BRIDGE_PID" $((CALLGRIND ? 60 : 0))
    BRIDGE_PID=
}

no_connections() { [ "$(stats_get connections)" = 0 ]; }

# --quick runs every traffic scenario on one bridge: a bridge takes ~3 s to
# join its consumer group, which would be most of a CI run. The scenarios
# share one configuration; between two, every connection must be gone.
traffic_bridge() { # name
    # A scenario that sets the bridge's configuration (SCEN_FRESH) always
    # gets a bridge of its own, --quick or not.
    if [ "$SCEN_FRESH" = 1 ]; then
        stop_bridge
        start_bridge "$1" "${SCEN_ENV[@]}"
        return 0
    fi
    if [ "$SHARE_BRIDGE" = 1 ] && [ -n "${BRIDGE_PID:-}" ] && [ "$BRIDGE_W" = "$W" ]; then
        wait_until 100 no_connections || say "connections of the previous scenario still open"
        return 0
    fi
    stop_bridge # a shared bridge with another number of workers
    start_bridge "$([ "$SHARE_BRIDGE" = 1 ] && echo "shared-w$W" || echo "$1")"
}

# how many objects /stats' "workers" list holds (SPEC 11): the workers in effect
stats_workers() {
    curl -sf "http://127.0.0.1:$INT_PORT/stats" | python3 -c '
import json, sys
try:
    print(len(json.load(sys.stdin).get("workers", [])))
except Exception:
    print(0)'
}
stats_get() { curl -sf "http://127.0.0.1:$INT_PORT/stats" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }

# ---- profiling (optional) ----

PERF_PIDS=()
profile_start() { # name
    [ "$CALLGRIND" = 1 ] && callgrind_control -i on "$BRIDGE_PID" >/dev/null
    [ "$PROFILE" = 1 ] || return 0
    mkdir -p "$PROFDIR"
    perf record -q -e cpu-clock -g -p "$BRIDGE_PID" -o "$PROFDIR/$1.perf.data" \
        >/dev/null 2>&1 &
    PERF_PIDS=($!)
    perf stat --per-thread -x, -o "$PROFDIR/$1.syscalls.csv" -p "$BRIDGE_PID" \
        -e syscalls:sys_enter_poll --filter 'nfds > 1' \
        -e syscalls:sys_enter_poll,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom \
        -e syscalls:sys_enter_read,syscalls:sys_enter_write >/dev/null 2>&1 &
    PERF_PIDS+=($!)
    sleep 0.3
}
profile_stop() { # name
    [ "$CALLGRIND" = 1 ] && callgrind_control -i off "$BRIDGE_PID" >/dev/null
    [ "$PROFILE" = 1 ] || return 0
    local p
    for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PERF_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    perf report -i "$PROFDIR/$1.perf.data" --stdio --no-children --sort comm,dso,sym -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -40 >"$PROFDIR/$1.top.txt" || true
}

# ---- one traffic scenario ----

# Set by a scenario around its run_traffic: a fresh bridge (SCEN_FRESH=1)
# started with SCEN_ENV (VAR=value ...), and more pb-produce arguments.
SCEN_FRESH=0
SCEN_ENV=()
SCEN_PROD=()
# frames per bridge CPU-second, and the send-mode reference's, by scenario
declare -A FPC=() REF_FPC=()

ROWS=$WORK/rows.tsv
NOTES=$WORK/notes.txt
: >"$ROWS"
: >"$NOTES"
SCENARIO_FILES=()

# run_traffic NAME TRANSPORT CONNS USERS KEY STALL RATE BATCH
#   TRANSPORT kafka|http; KEY users|*|<user>; STALL a fraction; BATCH for http
run_traffic() {
    local name=$1 transport=$2 conns=$3 users=$4 key=$5 stall=$6 rate=$7 batch=$8
    say "== $name: $conns connections, $users user(s), key $key, $rate events/s via $transport for ${SEND_S}s"
    traffic_bridge "$name"
    local rss_base closes0 drops0
    rss_base=$(rss_kb "$BRIDGE_PID")
    closes0=$(stats_get slow_client_closes); drops0=$(stats_get queue_dropped)

    local ready_file=$WORK/$name.ready expect_file=$WORK/$name.expect
    local -a lg=(--port "$PUB_PORT" --conns "$conns" --users "$users" --stall-fraction "$stall"
        --expect-file "$expect_file" --duration $((SEND_S + 40)) --ready-file "$ready_file")
    [ "$key" = "*" ] && lg+=(--expect-all)
    "$LOADGEN" "${lg[@]}" >"$WORK/$name.loadgen.json" 2>"$WORK/$name.loadgen.err" &
    local lg_pid=$!
    if ! wait_until 900 test -e "$ready_file"; then
        say "loadgen for $name did not get ready"; cat "$WORK/$name.loadgen.err" >&2; exit 1
    fi
    sleep 0.2
    local rss_conn
    rss_conn=$(rss_kb "$BRIDGE_PID")

    local -a prod=(--rate "$rate" --duration "$SEND_S" --count 0 --timeout $((SEND_S + 60)))
    if [ "$key" = users ]; then prod+=(--users "$users"); else prod+=(--key "$key"); fi
    prod+=("${SCEN_PROD[@]}")
    if [ "$transport" = http ]; then
        prod+=(--http "127.0.0.1:$INT_PORT" --batch "$batch")
    else
        prod+=(--brokers "$BOOTSTRAP" --topic "$TOPIC")
    fi

    local c0 l0 m0 us0 t0 c1 l1 m1 us1 t1 th0 th1
    profile_start "$name"
    c0=$(proc_ticks "$BRIDGE_PID"); l0=$(loop_ticks "$BRIDGE_PID"); m0=$(mock_ticks "$BRIDGE_PID")
    th0=$(thread_ticks "$BRIDGE_PID")
    us0=$(user_sys_ticks "$BRIDGE_PID"); t0=$(date +%s.%N)
    "$PRODUCE" "${prod[@]}" >"$WORK/$name.producer.json" 2>"$WORK/$name.producer.err" || true
    local sent
    sent=$(jget "$WORK/$name.producer.json" sent)
    echo "${sent:-0}" >"$expect_file.tmp" && mv "$expect_file.tmp" "$expect_file"
    wait "$lg_pid" || true
    c1=$(proc_ticks "$BRIDGE_PID"); l1=$(loop_ticks "$BRIDGE_PID"); m1=$(mock_ticks "$BRIDGE_PID")
    th1=$(thread_ticks "$BRIDGE_PID")
    us1=$(user_sys_ticks "$BRIDGE_PID"); t1=$(date +%s.%N)
    profile_stop "$name"
    local nworkers
    nworkers=$(stats_workers)

    local rss_end hwm slow_closes qdrops
    rss_end=$(rss_kb "$BRIDGE_PID"); hwm=$(hwm_kb "$BRIDGE_PID")
    slow_closes=$(($(stats_get slow_client_closes) - ${closes0:-0}))
    qdrops=$(($(stats_get queue_dropped) - ${drops0:-0}))
    # The bridge's own view (delivery latency histogram etc.), kept in bench-logs/
    curl -sf "http://127.0.0.1:$INT_PORT/metrics" >"$WORK/$name.metrics.txt" || true
    [ "$SHARE_BRIDGE" = 1 ] && [ "$SCEN_FRESH" = 0 ] || stop_bridge
    run_references "$name" "$conns" "$users" "$key" "$stall" "$rate"
    [ "$transport" != kafka ] || run_kafka_reference "$name" "$users" "$key" "$rate"
    record_traffic "$name" "$transport" "$conns" "$users" "$key" "$stall" "$rate" "$batch" \
        "$((c1 - c0))" "$((l1 - l0))" "$((m1 - m0))" "$us0" "$us1" "$(calc "$t1 - $t0")" \
        "$rss_base" "$rss_conn" "$rss_end" "$hwm" "${slow_closes:-0}" "${qdrops:-0}" \
        "$(thread_delta "$th0" "$th1")" "${nworkers:-0}"
}

# ---- the plain-send reference (pb-sendref) ----

REF_ROWS=$WORK/ref-rows.tsv
: >"$REF_ROWS"

# Whether scenario NAME gets reference runs.
wants_reference() {
    [ "$REF" = 1 ] || return 1
    [ "$1" != unicast-max ] || return 1 # its steps measure the bridge alone
    [ "$MODE" = quick ] || return 0
    case " $QUICK_REF " in *" $1 "*) return 0 ;; esac
    return 1
}

# run_references NAME CONNS USERS KEY STALL RATE: send mode, and writev mode
# where one event goes to several connections (fan-out, broadcast), which is
# where a connection's queue can hold more than one frame.
# The reference does not depend on the bridge's workers: it runs once per
# scenario (after the first workers value), under the scenario's base name,
# and every workers value's row is compared with it.
run_references() {
    local name=${1%-w[0-9]*} conns=$2 users=$3 key=$4
    wants_reference "$name" || return 0
    [ -e "$WORK/$name.ref-send.json" ] && return 0
    shift
    run_reference "$name" send "$@"
    if [ "$key" = "*" ] || [ "$conns" -gt "$users" ]; then
        run_reference "$name" writev "$@"
    fi
}

ref_gone() { ! kill -0 "$1" 2>/dev/null; }

# run_reference NAME MODE CONNS USERS KEY STALL RATE: pb-sendref in the
# bridge's place, pb-loadgen as for the bridge; into $WORK/NAME.ref-MODE.*
run_reference() {
    local name=$1 mode=$2 conns=$3 users=$4 key=$5 stall=$6 rate=$7
    local base=$WORK/$name.ref-$mode
    say "   reference, $mode mode: pb-sendref in the bridge's place, the same load"
    local -a ref=(--mode "$mode" --conns "$conns" --rate "$rate" --duration "$SEND_S"
        --setup-timeout 90 --linger 10 --port-file "$base.port" --expect-file "$base.expect")
    if [ "$key" = users ]; then ref+=(--users "$users"); else ref+=(--key "$key"); fi
    "$SENDREF" "${ref[@]}" >"$base.json" 2>"$base.err" &
    local ref_pid=$!
    echo '{}' >"$base.loadgen.json"
    if ! wait_until 50 test -s "$base.port"; then
        say "pb-sendref for $name did not start:"; cat "$base.err" >&2
        stop_pid "$ref_pid" 2
        echo '{}' >"$base.json"
        return 0
    fi
    # pb-sendref starts the events once every connection is welcomed and
    # writes the count for pb-loadgen when it is done generating.
    local -a lg=(--port "$(cat "$base.port")" --conns "$conns" --users "$users"
        --stall-fraction "$stall" --expect-file "$base.expect" --duration $((SEND_S + 40))
        --setup-timeout 90)
    [ "$key" = "*" ] && lg+=(--expect-all)
    "$LOADGEN" "${lg[@]}" >"$base.loadgen.json" 2>"$base.loadgen.err" || true
    # It ends by itself once the clients left; the bound is for a broken run.
    wait_until 100 ref_gone "$ref_pid" || say "pb-sendref for $name did not end by itself"
    stop_pid "$ref_pid" 5
    [ -s "$base.json" ] || echo '{}' >"$base.json"
    [ -s "$base.loadgen.json" ] || echo '{}' >"$base.loadgen.json"
}

# run_kafka_reference NAME USERS KEY RATE: pb-kafkaref, a plain consumer, in
# the bridge's place for the same producer load, with no sockets: the latency
# the producer, the broker and the consumer alone give on this machine. Under
# --dev it runs the embedded broker in its own process, as the bridge does;
# with PB_BENCH_BROKERS it reads a fresh topic. Into $WORK/NAME.ref-kafka.*
run_kafka_reference() {
    local name=${1%-w[0-9]*} users=$2 key=$3 rate=$4
    wants_reference "$name" || return 0
    local base=$WORK/$name.ref-kafka
    [ -e "$base.json" ] && return 0
    say "   reference, Kafka alone: pb-kafkaref consumes the same events, no sockets"
    local bootstrap topic
    local -a kr=(--ready-file "$base.ready" --timeout $((SEND_S + 90))
        --properties "$(consumer_properties)")
    if [ -n "${PB_BENCH_BROKERS:-}" ]; then
        bootstrap=$PB_BENCH_BROKERS topic=pb-bench-$RUN_ID-$name-kafkaref
        "$PRODUCE" --brokers "$bootstrap" --topic "$topic" \
            --create-topic "${PB_BENCH_PARTITIONS:-1}" --count 0 >/dev/null
        kr+=(--brokers "$bootstrap" --topic "$topic")
    else
        topic=pushbridge.events
        kr+=(--embedded --bootstrap-file "$base.bootstrap" --topic "$topic")
    fi
    "$KAFKAREF" "${kr[@]}" >"$base.json" 2>"$base.err" &
    local pid=$!
    if ! wait_until 300 test -e "$base.ready"; then
        say "pb-kafkaref for $name did not get ready:"; cat "$base.err" >&2
        stop_pid "$pid" 2
        echo '{}' >"$base.json"
        return 0
    fi
    [ -n "${PB_BENCH_BROKERS:-}" ] || bootstrap=$(cat "$base.bootstrap")
    local -a prod=(--brokers "$bootstrap" --topic "$topic" --rate "$rate" --duration "$SEND_S"
        --count 0 --timeout $((SEND_S + 60)) "${SCEN_PROD[@]}")
    if [ "$key" = users ]; then prod+=(--users "$users"); else prod+=(--key "$key"); fi
    "$PRODUCE" "${prod[@]}" >"$base.producer.json" 2>"$base.producer.err" || true
    # It stops by itself 3 s after the last message; the bound is for a broken run.
    wait_until 300 ref_gone "$pid" || say "pb-kafkaref for $name did not end by itself"
    stop_pid "$pid" 5
    [ -s "$base.json" ] || echo '{}' >"$base.json"
    [ -s "$base.producer.json" ] || echo '{}' >"$base.producer.json"
}

# One mode's figures as JSON members, and its ratio; "" when it did not run.
ref_json() { # name mode bridge_fpc
    local base=$WORK/${1%-w[0-9]*}.ref-$2
    [ -e "$base.json" ] || return 0
    local fpc
    fpc=$(jget "$base.json" frames_per_cpu_s)
    printf '"%s":{"frames_per_cpu_s":%s,"bridge_ratio":%s,"sendref":%s,"loadgen":%s}' "$2" \
        "$fpc" "$(calc "$fpc > 0 ? $3 / $fpc : 0")" "$(tr -d '\n' <"$base.json")" \
        "$(tr -d '\n' <"$base.loadgen.json")"
}

# The scenario's "reference" member for results.json (with a leading comma),
# and its row of the second table.
record_reference() { # name bridge_fpc
    local name=$1 fpc=$2 send=$WORK/${1%-w[0-9]*}.ref-send writev=$WORK/${1%-w[0-9]*}.ref-writev
    [ -e "$send.json" ] || return 0
    local js jw
    js=$(ref_json "$name" send "$fpc")
    jw=$(ref_json "$name" writev "$fpc")
    printf ',"reference":{"tool":"pb-sendref",%s%s}' "$js" "${jw:+,$jw}"
    local kafka=$WORK/${1%-w[0-9]*}.ref-kafka kp99="-"
    if [ -e "$kafka.json" ]; then
        printf ',"kafka_reference":{"tool":"pb-kafkaref","consumer":%s,"producer":%s}' \
            "$(tr -d '\n' <"$kafka.json")" "$(tr -d '\n' <"$kafka.producer.json")"
        [ "$(jget "$kafka.json" lat_count)" = 0 ] ||
            kp99=$(calc "$(jget "$kafka.json" lat_p99_us) / 1000")
    fi

    local lost=0 dup=0 ooo=0 f
    for f in "$send.loadgen.json" "$writev.loadgen.json"; do
        [ -e "$f" ] || continue
        lost=$((lost + $(jget "$f" lost))); dup=$((dup + $(jget "$f" dup))); ooo=$((ooo + $(jget "$f" ooo)))
        [ "$(jget "$f" welcomed)" = "$(jget "$f" conns)" ] ||
            printf '%s: reference: only %s of %s connections welcomed\n' "$name" \
                "$(jget "$f" welcomed)" "$(jget "$f" conns)" >>"$NOTES"
    done
    local sfpc wfpc="-" wpw="-" wratio="-"
    sfpc=$(jget "$send.json" frames_per_cpu_s)
    REF_FPC[$name]=$sfpc
    if [ -e "$writev.json" ]; then
        wfpc=$(jget "$writev.json" frames_per_cpu_s)
        wpw=$(jget "$writev.json" frames_per_write_call)
        wratio=$(calc "$wfpc > 0 ? $fpc / $wfpc : 0")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$fpc" "$sfpc" \
        "$(calc "$sfpc > 0 ? $fpc / $sfpc : 0")" "$(calc "$(jget "$send.loadgen.json" lat_p99_us) / 1000")" \
        "$kp99" "$(calc "$(jget "$send.json" cpu_share) * 100")" "$wfpc" "$wpw" "$wratio" \
        "$lost/$dup/$ooo" >>"$REF_ROWS"
}

record_traffic() {
    local name=$1 transport=$2 conns=$3 users=$4 key=$5 stall=$6 rate=$7 batch=$8
    local proc_t=$9 loop_t=${10} mock_t=${11} us0=${12} us1=${13} wall=${14}
    local rss_base=${15} rss_conn=${16} rss_end=${17} hwm=${18} slow_closes=${19} qdrops=${20}
    local -a th=(${21})
    local nworkers=${22}
    local lgj=$WORK/$name.loadgen.json pj=$WORK/$name.producer.json
    [ -s "$lgj" ] || echo '{}' >"$lgj"
    [ -s "$pj" ] || echo '{}' >"$pj"

    local events stalled_events welcomed frames proc_s loop_s mock_s bridge_s user_s sys_s
    events=$(jget "$lgj" events); stalled_events=$(jget "$lgj" stalled_events)
    welcomed=$(jget "$lgj" welcomed)
    frames=$((${events:-0} + ${stalled_events:-0}))
    proc_s=$(calc "$proc_t / $CLK_TCK"); loop_s=$(calc "$loop_t / $CLK_TCK")
    mock_s=$(calc "$mock_t / $CLK_TCK"); bridge_s=$(calc "($proc_t - $mock_t) / $CLK_TCK")
    user_s=$(calc "(${us1% *} - ${us0% *}) / $CLK_TCK"); sys_s=$(calc "(${us1#* } - ${us0#* }) / $CLK_TCK")
    local fpc fpl per_conn_idle per_conn_end
    fpc=$(calc "$bridge_s > 0 ? $frames / $bridge_s : 0")
    fpl=$(calc "$loop_s > 0 ? $frames / $loop_s : 0")
    # by thread: the main loop, the pb-worker-N threads, librdkafka's own
    local main_s wk_s rest_s wk_list="" v
    main_s=$(calc "${th[0]} / $CLK_TCK"); wk_s=$(calc "${th[1]} / $CLK_TCK")
    rest_s=$(calc "${th[3]} / $CLK_TCK")
    if [ "${th[4]}" != - ]; then
        for v in ${th[4]//,/ }; do wk_list+=${wk_list:+,}$(calc "$v / $CLK_TCK"); done
    fi
    THREADS_COL="$(printf '%.1f/%.1f/%.1f' "$main_s" "$wk_s" "$rest_s")"
    per_conn_idle=$(calc "${welcomed:-0} > 0 ? ($rss_conn - $rss_base) * 1024 / ${welcomed:-1} : 0")
    per_conn_end=$(calc "${welcomed:-0} > 0 ? ($rss_end - $rss_base) * 1024 / ${welcomed:-1} : 0")
    # On a shared bridge malloc keeps what earlier scenarios freed: only the
    # first scenario has a clean baseline.
    local per_conn_col
    per_conn_col=$(calc "$per_conn_end / 1024")
    if [ "$SHARE_BRIDGE" = 1 ] && [ "$SCEN_FRESH" = 0 ] && [ "$SHARED_RUNS" -gt 0 ]; then
        per_conn_idle=null per_conn_end=null per_conn_col=-
    fi
    [ "$SCEN_FRESH" = 1 ] || SHARED_RUNS=$((SHARED_RUNS + 1))
    FPC[$name]=$fpc

    local f=$WORK/$name.scenario.json
    {
        printf '{"name":"%s","transport":"%s","conns":%s,"users":%s,"key":"%s",' \
            "$name" "$transport" "$conns" "$users" "$key"
        printf '"stall_fraction":%s,"rate":%s,"batch":%s,"send_s":%s,' "$stall" "$rate" "$batch" "$SEND_S"
        printf '"bridge":{"window_s":%s,"process_cpu_s":%s,"embedded_kafka_cpu_s":%s,' "$wall" "$proc_s" "$mock_s"
        printf '"bridge_cpu_s":%s,"loop_cpu_s":%s,"user_s":%s,"sys_s":%s,' "$bridge_s" "$loop_s" "$user_s" "$sys_s"
        printf '"workers_in_stats":%s,"main_thread_cpu_s":%s,"worker_threads_cpu_s":%s,' "$nworkers" "$main_s" "$wk_s"
        printf '"worker_thread_cpu_s":[%s],"kafka_client_threads_cpu_s":%s,' "$wk_list" "$rest_s"
        printf '"main_thread_share":%s,' "$(calc "$bridge_s > 0 ? $main_s / $bridge_s : 0")"
        printf '"frames":%s,"frames_per_bridge_cpu_s":%s,"frames_per_loop_cpu_s":%s,' "$frames" "$fpc" "$fpl"
        printf '"rss_base_kb":%s,"rss_connected_kb":%s,"rss_end_kb":%s,"rss_peak_kb":%s,' \
            "$rss_base" "$rss_conn" "$rss_end" "$hwm"
        printf '"rss_per_conn_connected_b":%s,"rss_per_conn_end_b":%s,' "$per_conn_idle" "$per_conn_end"
        printf '"slow_client_closes":%s,"queue_dropped":%s,' "$slow_closes" "$qdrops"
        printf '"settings":"%s"},' "${SCEN_ENV[*]}"
        printf '"producer":%s,"loadgen":%s' "$(tr -d '\n' <"$pj")" "$(tr -d '\n' <"$lgj")"
        record_reference "$name" "$fpc"
        printf '}'
    } >"$f"
    SCENARIO_FILES+=("$f")

    local stalled closed failed
    stalled=$(jget "$lgj" stalled); closed=$(jget "$lgj" reading_closed); failed=$(jget "$lgj" failed)
    [ "$stalled" != 0 ] && printf '%s: %s stalled connections took %s frames into their socket buffers; %s were closed by the bridge (%s 4009 closes in all)\n' \
        "$name" "$stalled" "$(jget "$lgj" stalled_events)" "$(jget "$lgj" stalled_closed)" "$slow_closes" >>"$NOTES"
    [ "$closed" != 0 ] && printf '%s: %s reading connections were closed by the bridge: %s\n' \
        "$name" "$closed" "$(grep -o '"reading_close_codes":{[^}]*}' "$lgj")" >>"$NOTES"
    [ "$failed" != 0 ] && printf '%s: %s connections failed to set up\n' "$name" "$failed" >>"$NOTES"

    local ms="/ 1000"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$name" "$conns" "$(calc "$(jget "$pj" send_rate) + 0")" "$(calc "$(jget "$lgj" frames_per_s) + 0")" \
        "$fpc" "$fpl" \
        "$(calc "$(jget "$lgj" lat_p50_us) $ms")" "$(calc "$(jget "$lgj" lat_p99_us) $ms")" \
        "$(calc "$(jget "$lgj" lat_p999_us) $ms")" "$(calc "$(jget "$lgj" lat_max_us) $ms")" \
        "$(calc "$rss_end / 1024")" "$per_conn_col" \
        "$(jget "$lgj" lost)/$(jget "$lgj" dup)/$(jget "$lgj" ooo)" \
        "$(calc "$(jget "$lgj" loadgen_cpu_share) * 100")" "$THREADS_COL" >>"$ROWS"
}

# ---- idle and fdlimit: memory per authenticated connection ----

# run_idle NAME CONNS WINDOW_S: RSS per connection, and the bridge's CPU over
# WINDOW_S seconds with every connection open and quiet.
run_idle() {
    local name=$1 conns=$2 window=$3
    say "== $name: $conns authenticated idle connections"
    stop_bridge # always a fresh one: RSS per connection needs a clean baseline
    start_bridge "$name"
    sleep 0.5
    local rss_base
    rss_base=$(rss_kb "$BRIDGE_PID")
    local ready_file=$WORK/$name.ready lgj=$WORK/$name.loadgen.json
    # --procs 2: the loadgen also shows it can split itself (one process
    # cannot hold more than its own open-file limit).
    "$LOADGEN" --port "$PUB_PORT" --conns "$conns" --users "$conns" --procs 2 --duration 300 \
        --setup-timeout 120 --ready-file "$ready_file" >"$lgj" 2>"$WORK/$name.loadgen.err" &
    local lg_pid=$!
    if ! wait_until 1300 test -e "$ready_file"; then
        say "loadgen for $name did not get ready"; cat "$WORK/$name.loadgen.err" >&2; exit 1
    fi
    sleep "$IDLE_SETTLE_S" # let lws and malloc settle
    local c0 l0 m0 c1 l1 m1 rss hwm open th0 th1 nworkers
    c0=$(proc_ticks "$BRIDGE_PID"); l0=$(loop_ticks "$BRIDGE_PID"); m0=$(mock_ticks "$BRIDGE_PID")
    th0=$(thread_ticks "$BRIDGE_PID")
    sleep "$window"
    c1=$(proc_ticks "$BRIDGE_PID"); l1=$(loop_ticks "$BRIDGE_PID"); m1=$(mock_ticks "$BRIDGE_PID")
    th1=$(thread_ticks "$BRIDGE_PID")
    nworkers=$(stats_workers)
    rss=$(rss_kb "$BRIDGE_PID"); hwm=$(hwm_kb "$BRIDGE_PID")
    open=$(stats_get connections)
    kill -TERM "$lg_pid" 2>/dev/null || true
    wait "$lg_pid" || true
    stop_bridge
    local welcomed per_conn cpu_pct loop_pct mock_pct
    [ -s "$lgj" ] || echo '{}' >"$lgj"
    welcomed=$(jget "$lgj" welcomed)
    per_conn=$(calc "${welcomed:-0} > 0 ? ($rss - $rss_base) * 1024 / ${welcomed:-1} : 0")
    cpu_pct=$(calc "($c1 - $c0) * 100 / $CLK_TCK / $window")
    loop_pct=$(calc "($l1 - $l0) * 100 / $CLK_TCK / $window")
    mock_pct=$(calc "($m1 - $m0) * 100 / $CLK_TCK / $window")
    local -a th=($(thread_delta "$th0" "$th1"))
    local wk_pct
    wk_pct=$(calc "${th[1]} * 100 / $CLK_TCK / $window")
    local f=$WORK/$name.scenario.json
    {
        printf '{"name":"%s","conns":%s,"bridge":{"open_connections":%s,' "$name" "$conns" "${open:-0}"
        printf '"rss_base_kb":%s,"rss_kb":%s,"rss_peak_kb":%s,"rss_per_conn_b":%s,' \
            "$rss_base" "$rss" "$hwm" "$per_conn"
        printf '"idle_window_s":%s,"idle_cpu_pct":%s,"idle_loop_cpu_pct":%s,' \
            "$window" "$cpu_pct" "$loop_pct"
        printf '"idle_embedded_kafka_cpu_pct":%s,"idle_worker_threads_cpu_pct":%s,' "$mock_pct" "$wk_pct"
        printf '"workers_in_stats":%s},' "${nworkers:-0}"
        printf '"loadgen":%s}' "$(tr -d '\n' <"$lgj")"
    } >"$f"
    SCENARIO_FILES+=("$f")
    printf '%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\t-\t%s\n' "$name" "${welcomed:-0}" \
        "$(calc "$rss / 1024")" "$(calc "$per_conn / 1024")" \
        "$(calc "$(jget "$lgj" loadgen_cpu_share) * 100")" >>"$ROWS"
    local fmt='%s: %s idle connections: bridge CPU %.1f %% of a core over %s s,'
    fmt+=' %.1f %% without the embedded broker; main thread %.1f %%, pb-worker threads %.1f %%\n'
    # shellcheck disable=SC2059 # the format is ours
    printf "$fmt" "$name" "${welcomed:-0}" "$cpu_pct" "$window" "$(calc "$cpu_pct - $mock_pct")" \
        "$loop_pct" "$wk_pct" >>"$NOTES"
    [ "${welcomed:-0}" = "$conns" ] ||
        printf '%s: only %s of %s connections welcomed\n' "$name" "${welcomed:-0}" "$conns" >>"$NOTES"
}

# ---- logins: connection set-up as fast as it goes ----

# run_logins CONNS [NAME ENV...]: CONNS clients connect, upgrade and log in,
# at most pb-loadgen's --max-pending (256) handshakes in flight. The time is
# the loadgen's, from its first connect() to its last welcome; the bridge's
# CPU is taken over the same stretch, then over closing them all.
# logins-cluster runs it in cluster.mode kafka (one node): what presence
# (SPEC 8) costs per login and close, in CPU and in bytes written to
# cluster.presence_topic (pushbridge_presence_bytes_written_total).
run_logins() {
    local conns=$1 name=${2:-logins}-w$W
    shift; [ $# -gt 0 ] && shift
    say "== $name: $conns connections log in as fast as they go"
    stop_bridge
    start_bridge "$name" "$@"
    sleep 0.5
    local rss_base ready_file=$WORK/$name.ready lgj=$WORK/$name.loadgen.json
    rss_base=$(rss_kb "$BRIDGE_PID")
    local c0 l0 c1 l1 c2 rss
    c0=$(proc_ticks "$BRIDGE_PID"); l0=$(loop_ticks "$BRIDGE_PID")
    "$LOADGEN" --port "$PUB_PORT" --conns "$conns" --users "$conns" --duration 300 \
        --setup-timeout 120 --ready-file "$ready_file" >"$lgj" 2>"$WORK/$name.loadgen.err" &
    local lg_pid=$!
    if ! wait_until 1300 test -e "$ready_file"; then
        say "loadgen for logins did not get ready"; cat "$WORK/$name.loadgen.err" >&2; exit 1
    fi
    c1=$(proc_ticks "$BRIDGE_PID"); l1=$(loop_ticks "$BRIDGE_PID")
    rss=$(rss_kb "$BRIDGE_PID")
    kill -TERM "$lg_pid" 2>/dev/null || true
    wait "$lg_pid" || true
    wait_until 300 no_connections || say "logins: connections still open after 30 s"
    c2=$(proc_ticks "$BRIDGE_PID")
    local pres_bytes pres_msgs
    pres_bytes=$(curl -sf "http://127.0.0.1:$INT_PORT/metrics" |
        awk '$1 == "pushbridge_presence_bytes_written_total" { print $2 }')
    pres_msgs=$(curl -sf "http://127.0.0.1:$INT_PORT/metrics" |
        awk '$1 == "pushbridge_presence_messages_total{direction=\"out\"}" { print $2 }')
    stop_bridge
    [ -s "$lgj" ] || echo '{}' >"$lgj"
    local welcomed setup_s rate login_cpu close_cpu per_conn
    welcomed=$(jget "$lgj" welcomed); setup_s=$(jget "$lgj" setup_s)
    rate=$(jget "$lgj" setup_rate)
    login_cpu=$(calc "($c1 - $c0) / $CLK_TCK"); close_cpu=$(calc "($c2 - $c1) / $CLK_TCK")
    per_conn=$(calc "${welcomed:-0} > 0 ? ($rss - $rss_base) * 1024 / ${welcomed:-1} : 0")
    local f=$WORK/$name.scenario.json
    {
        printf '{"name":"%s","conns":%s,"logins":%s,"login_s":%s,"logins_per_s":%s,' \
            "$name" "$conns" "${welcomed:-0}" "$setup_s" "$rate"
        printf '"bridge":{"login_cpu_s":%s,"login_loop_cpu_s":%s,"logins_per_bridge_cpu_s":%s,' \
            "$login_cpu" "$(calc "($l1 - $l0) / $CLK_TCK")" \
            "$(calc "$login_cpu > 0 ? ${welcomed:-0} / $login_cpu : 0")"
        printf '"close_cpu_s":%s,"rss_base_kb":%s,"rss_kb":%s,"rss_per_conn_b":%s},' \
            "$close_cpu" "$rss_base" "$rss" "$per_conn"
        printf '"loadgen":%s}' "$(tr -d '\n' <"$lgj")"
    } >"$f"
    SCENARIO_FILES+=("$f")
    printf '%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\t-\t%s\n' "$name" "${welcomed:-0}" \
        "$(calc "$rss / 1024")" "$(calc "$per_conn / 1024")" \
        "$(calc "$(jget "$lgj" loadgen_cpu_share) * 100")" >>"$ROWS"
    local fmt='%s: %s of %s in %.2f s = %.0f logins/s; handshake p50 %.1f ms, p99 %.1f ms;'
    fmt+=' bridge CPU %.2f s to log them in (%.0f per CPU-s), %.2f s to close them\n'
    # shellcheck disable=SC2059 # the format is ours
    printf "$fmt" "$name" "${welcomed:-0}" "$conns" "$setup_s" "$rate" \
        "$(calc "$(jget "$lgj" handshake_p50_us) / 1000")" \
        "$(calc "$(jget "$lgj" handshake_p99_us) / 1000")" "$login_cpu" \
        "$(calc "$login_cpu > 0 ? ${welcomed:-0} / $login_cpu : 0")" "$close_cpu" >>"$NOTES"
    [ "${pres_bytes:-0}" != 0 ] && printf '%s: presence wrote %s messages, %s bytes: %.1f bytes per login and close\n' \
        "$name" "${pres_msgs:-0}" "$pres_bytes" \
        "$(calc "${welcomed:-0} > 0 ? $pres_bytes / ${welcomed:-1} : 0")" >>"$NOTES"
    return 0
}

# ---- task state and history (issue 10): what they cost ----

# The settings that turn task state, history and the rebuild on start off.
STATE_OFF_ENV=(PUSHBRIDGE_STATE_MAX_TASKS_PER_USER=0 PUSHBRIDGE_HISTORY_MAX_EVENTS=0
    PUSHBRIDGE_STATE_LOOKBACK_MS=0)

# run_state NAME CONNS RATE: the unicast load with --tasks 10 (event i is
# task t<i % 10>, so with 10 | users each user keeps one task, replaced by
# every event, and a history entry per event), on a fresh bridge: state and
# history on (defaults) for "state", off for "state-off".
run_state() {
    local name=$1 conns=$2 rate=$3
    SCEN_FRESH=1 SCEN_PROD=(--tasks 10) SCEN_ENV=()
    [ "${name%-w[0-9]*}" = state-off ] && SCEN_ENV=("${STATE_OFF_ENV[@]}")
    run_traffic "$name" kafka "$conns" "$conns" users 0 "$rate" 1
    SCEN_FRESH=0 SCEN_PROD=() SCEN_ENV=()
    state_cost_note
}

# Once both state and state-off ran: the ratio of their frames per bridge
# CPU-second against issue 10's target (at most 10 % fewer with state on),
# into NOTES and STATE_COST_JSON (results.json's "state_cost").
STATE_COST_JSON=""
state_cost_note() {
    local on=${FPC[state-w$W]:-} off=${FPC[state-off-w$W]:-} ratio refs="" ratio_ref=null met
    [ -n "$on" ] && [ -n "$off" ] || return 0
    ratio=$(calc "$off > 0 ? $on / $off : 0")
    met=$(awk "BEGIN { print ($ratio >= 0.9) ? \"met\" : \"missed\" }")
    local ron=${REF_FPC[state-w$W]:-} roff=${REF_FPC[state-off-w$W]:-}
    if [ -n "$ron" ] && [ -n "$roff" ] && [ "$(calc "$ron > 0 && $roff > 0")" = 1 ]; then
        # Each against its own reference run, which takes out some of the
        # machine's drift between the two runs.
        ratio_ref=$(calc "($on / $ron) / ($off / $roff)")
        refs=$(printf '; against each run'"'"'s pb-sendref %.3f / %.3f = %.3f' \
            "$(calc "$on / $ron")" "$(calc "$off / $roff")" "$ratio_ref")
    fi
    printf 'state cost (workers %s): %.0f frames per bridge CPU-s with task state and history, %.0f without: ratio %.3f (target >= 0.90: %s)%s\n' \
        "$W" "$on" "$off" "$ratio" "$met" "$refs" >>"$NOTES"
    STATE_COST_JSON+=${STATE_COST_JSON:+,}$(printf '{"workers":%s,"frames_per_bridge_cpu_s_state":%s,"frames_per_bridge_cpu_s_state_off":%s,"ratio":%s,"ratio_against_reference":%s,"target_min_ratio":0.9,"target_met":%s}' \
        "$W" "$on" "$off" "$ratio" "$ratio_ref" "$([ "$met" = met ] && echo true || echo false)")
}

# "state":{...} and "history":{...} of /stats as "users tasks bytes events hbytes"
state_gauges() {
    local j
    j=$(curl -sf "http://127.0.0.1:$INT_PORT/stats") || { echo "0 0 0 0 0"; return; }
    local st hi
    st=$(grep -o '"state":{[^}]*}' <<<"$j")
    hi=$(grep -o '"history":{[^}]*}' <<<"$j")
    printf '%s %s %s %s %s\n' "$(jnum "$st" users)" "$(jnum "$st" tasks)" "$(jnum "$st" bytes)" \
        "$(jnum "$hi" events)" "$(jnum "$hi" bytes)"
}
jnum() { local v; v=$(grep -o "\"$2\":[0-9]*" <<<"$1" | head -1 | cut -d: -f2); echo "${v:-0}"; }
# the sum of every topic's "consumed" in /stats
consumed_total() {
    curl -sf "http://127.0.0.1:$INT_PORT/stats" | grep -o '"consumed":[0-9]*' | cut -d: -f2 |
        awk '{ s += $1 } END { print s + 0 }'
}
consumed_at_least() { [ "$(consumed_total)" -ge "$1" ]; }

# run_tasks_variant VARIANT EVENTS USERS [VAR=value ...]: a fresh bridge, no
# clients; EVENTS events to USERS users, every one a task of its own; sets
# TV_* (RSS growth in KiB, the gauges, CPU) once /stats counts them consumed.
run_tasks_variant() {
    local v=$1 events=$2 users=$3
    shift 3
    stop_bridge
    start_bridge "tasks-$v" PUSHBRIDGE_STATE_MAX_BYTES=536870912 \
        PUSHBRIDGE_HISTORY_MAX_BYTES=536870912 "$@"
    sleep 0.5
    local rss0 c0 c1 m0 m1 t0 t1 base=$WORK/tasks-$v
    rss0=$(rss_kb "$BRIDGE_PID")
    c0=$(proc_ticks "$BRIDGE_PID"); m0=$(mock_ticks "$BRIDGE_PID"); t0=$(date +%s.%N)
    "$PRODUCE" --brokers "$BOOTSTRAP" --topic "$TOPIC" --users "$users" --tasks "$events" \
        --count "$events" --rate 0 --timeout 60 >"$base.producer.json" 2>"$base.producer.err" || true
    local sent
    sent=$(jget "$base.producer.json" sent)
    wait_until 600 consumed_at_least "${sent:-0}" ||
        say "tasks-$v: only $(consumed_total) of ${sent:-0} events consumed after 60 s"
    c1=$(proc_ticks "$BRIDGE_PID"); m1=$(mock_ticks "$BRIDGE_PID"); t1=$(date +%s.%N)
    sleep 0.5 # let the loop finish what it took last
    TV_RSS_KB=$(($(rss_kb "$BRIDGE_PID") - rss0))
    read -r TV_USERS TV_TASKS TV_SBYTES TV_HEVENTS TV_HBYTES <<<"$(state_gauges)"
    TV_SENT=${sent:-0} TV_CONSUMED=$(consumed_total)
    TV_CPU=$(calc "($c1 - $c0 - ($m1 - $m0)) / $CLK_TCK") TV_WALL=$(calc "$t1 - $t0")
    curl -sf "http://127.0.0.1:$INT_PORT/metrics" >"$base.metrics.txt" || true
    stop_bridge
    printf '"%s":{"settings":"%s","sent":%s,"consumed":%s,"rss_growth_kb":%s,' "$v" "$*" \
        "$TV_SENT" "$TV_CONSUMED" "$TV_RSS_KB"
    printf '"state":{"users":%s,"tasks":%s,"bytes":%s},"history":{"events":%s,"bytes":%s},' \
        "$TV_USERS" "$TV_TASKS" "$TV_SBYTES" "$TV_HEVENTS" "$TV_HBYTES"
    printf '"bridge_cpu_s":%s,"window_s":%s}' "$TV_CPU" "$TV_WALL"
}

# run_tasks EVENTS: memory per 100k live tasks. Three fresh bridges take the
# same EVENTS events (100 tasks per user): "off" (state and history off: what
# consuming them costs anyway, the embedded broker's copy of them included),
# "state" (history off) and "state-history" (the defaults). RSS growth minus
# off's is what the tasks (and history) hold; the gauges are the bridge's own
# count (state.max_bytes and history.max_bytes are raised to 512 MiB so that
# nothing is evicted). Figures are scaled to 100,000 tasks when EVENTS is not.
run_tasks() {
    local name=tasks-100k events=$1 users=$(($1 / 100))
    say "== $name: $events events to $users users, one task each, no clients (off, state, state+history)"
    local f=$WORK/$name.scenario.json jv=$WORK/$name.variants.json
    local off_kb st_kb sh_kb st_tasks sh_tasks st_b sh_b sh_hb sh_he off_cpu st_cpu sh_cpu
    {
        printf '{'
        run_tasks_variant off "$events" "$users" "${STATE_OFF_ENV[@]}"
        off_kb=$TV_RSS_KB off_cpu=$TV_CPU
        printf ','
        run_tasks_variant state "$events" "$users" PUSHBRIDGE_HISTORY_MAX_EVENTS=0
        st_kb=$TV_RSS_KB st_tasks=$TV_TASKS st_b=$TV_SBYTES st_cpu=$TV_CPU
        printf ','
        run_tasks_variant state-history "$events" "$users"
        sh_kb=$TV_RSS_KB sh_tasks=$TV_TASKS sh_b=$TV_SBYTES sh_hb=$TV_HBYTES sh_he=$TV_HEVENTS
        sh_cpu=$TV_CPU
        printf '}'
    } >"$jv"
    local scale rss_st rss_sh g_st g_sh
    scale=$(calc "100000 / $events")
    rss_st=$(calc "($st_kb - $off_kb) * 1024 * $scale")
    rss_sh=$(calc "($sh_kb - $off_kb) * 1024 * $scale")
    g_st=$(calc "$st_b * $scale")
    g_sh=$(calc "($sh_b + $sh_hb) * $scale")
    {
        printf '{"name":"%s","events":%s,"users":%s,"tasks_per_user":100,"scaled_by":%s,' \
            "$name" "$events" "$users" "$scale"
        printf '"variants":%s,"per_100k_tasks":{"rss_state_b":%s,"rss_state_history_b":%s,' \
            "$(cat "$jv")" "$rss_st" "$rss_sh"
        printf '"gauge_state_b":%s,"gauge_state_history_b":%s,' "$g_st" "$g_sh"
        printf '"rss_per_task_state_b":%s,"rss_per_task_state_history_b":%s,' \
            "$(calc "$rss_st / 100000")" "$(calc "$rss_sh / 100000")"
        printf '"gauge_per_task_state_b":%s,"gauge_per_task_state_history_b":%s}}' \
            "$(calc "$g_st / 100000")" "$(calc "$g_sh / 100000")"
    } >"$f"
    SCENARIO_FILES+=("$f")
    printf '%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t-\t-\t-\n' "$name" \
        "$(calc "$rss_sh / 1048576")" >>"$ROWS"
    local sc=""
    [ "$events" = 100000 ] || sc=" (measured with $events, scaled)"
    local fmt='%s: per 100k live tasks%s: RSS %.1f MiB with state (history off), %.1f MiB with state and history'
    fmt+=' (%.0f / %.0f B per task); the gauges say %.1f MiB (state.bytes) and %.1f MiB (+ history.bytes)\n'
    # shellcheck disable=SC2059 # the format is ours
    printf "$fmt" "$name" "$sc" "$(calc "$rss_st / 1048576")" "$(calc "$rss_sh / 1048576")" \
        "$(calc "$rss_st / 100000")" "$(calc "$rss_sh / 100000")" "$(calc "$g_st / 1048576")" \
        "$(calc "$g_sh / 1048576")" >>"$NOTES"
    printf '%s: /stats state.tasks %s (state), %s (state+history) of %s events; history.events %s; RSS growth off/state/state+history %s/%s/%s KiB; bridge CPU to consume them %.2f/%.2f/%.2f s\n' \
        "$name" "$st_tasks" "$sh_tasks" "$events" "$sh_he" "$off_kb" "$st_kb" "$sh_kb" \
        "$off_cpu" "$st_cpu" "$sh_cpu" >>"$NOTES"
    [ "$st_tasks" = "$events" ] && [ "$sh_tasks" = "$events" ] ||
        printf '%s: expected %s live tasks in /stats\n' "$name" "$events" >>"$NOTES"
}

# ---- cluster (SPEC 8, issue 11): N nodes, every one reads every event ----

# Node i's process, ports and log (1-based); node 1 carries --dev's embedded
# broker unless PB_BENCH_BROKERS names a real one.
NODE_PID=() NODE_PUB=() NODE_INT=() NODE_LOG=()
node_ready() { curl -sf -o /dev/null "http://127.0.0.1:${NODE_INT[$1]}/readyz"; }
node_stats() { curl -sf "http://127.0.0.1:${NODE_INT[$1]}/stats"; }
node_consumed() { # the sum of every topic's "consumed"
    node_stats "$1" | grep -o '"consumed":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }'
}
node_skipped() {
    local v
    v=$(curl -sf "http://127.0.0.1:${NODE_INT[$1]}/metrics" |
        awk '$1 == "pushbridge_events_skipped_total" { print $2 }')
    echo "${v:-0}"
}
node_bootstrap() { # node 1's embedded broker's address into BOOTSTRAP, once /stats has it
    BOOTSTRAP=$(curl -sf "http://127.0.0.1:${NODE_INT[1]}/stats" |
        grep -o '"kafka_bootstrap":"[^"]*"' | cut -d'"' -f4) && [ -n "$BOOTSTRAP" ]
}
node_caught_up() { [ "$(node_consumed "$1")" -ge "$2" ]; }

# launch_node I NAME [VAR=value ...]: starts node I, does not wait for it.
launch_node() {
    local i=$1 name=$2
    shift 2
    NODE_PUB[$i]=$(pick_port)
    NODE_INT[$i]=$(pick_port)
    while [ "${NODE_INT[$i]}" = "${NODE_PUB[$i]}" ]; do NODE_INT[$i]=$(pick_port); done
    local -a env=(
        PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:${NODE_PUB[$i]}
        PUSHBRIDGE_LISTEN_INTERNAL=127.0.0.1:${NODE_INT[$i]}
        PUSHBRIDGE_WS_MAX_CONNECTIONS_PER_USER=100000
        PUSHBRIDGE_WS_MAX_CONNECTIONS=1000000
        PUSHBRIDGE_CLUSTER_MODE=kafka PUSHBRIDGE_CLUSTER_NODE_NAME=n$i
        PUSHBRIDGE_WORKERS=$W
    )
    local -a args=()
    if [ -n "${PB_BENCH_BROKERS:-}" ]; then
        env+=(PUSHBRIDGE_KAFKA_BROKERS="$BOOTSTRAP" PUSHBRIDGE_KAFKA_TOPICS="$TOPIC"
            PUSHBRIDGE_KAFKA_GROUP_ID="$TOPIC" PUSHBRIDGE_PUSH_TOPIC="$TOPIC.push"
            PUSHBRIDGE_AUTH_MODE=none)
        [ -n "${PB_BENCH_KAFKA_PROPERTIES:-}" ] &&
            env+=(PUSHBRIDGE_KAFKA_PROPERTIES="$PB_BENCH_KAFKA_PROPERTIES")
    else
        env+=(PUSHBRIDGE_KAFKA_PROPERTIES="${PB_BENCH_KAFKA_PROPERTIES:-fetch.wait.max.ms=1}")
        if [ "$i" = 1 ]; then
            args+=(--dev)
        else # the embedded broker of node 1
            env+=(PUSHBRIDGE_KAFKA_BROKERS="$BOOTSTRAP" PUSHBRIDGE_KAFKA_TOPICS="$TOPIC"
                PUSHBRIDGE_AUTH_MODE=none)
        fi
    fi
    NODE_LOG[$i]=$WORK/$name.n$i.bridge.log
    env "${env[@]}" "$@" "$BRIDGE_BIN" "${args[@]}" >"${NODE_LOG[$i]}" 2>&1 &
    NODE_PID[$i]=$!
}

wait_node() { # i name
    wait_until 600 node_ready "$1" && return 0
    say "node n$1 of $2 did not become ready; its log:"
    tail -20 "${NODE_LOG[$1]}" >&2
    exit 1
}

stop_nodes() {
    local i
    for i in "${!NODE_PID[@]}"; do kill -TERM "${NODE_PID[$i]}" 2>/dev/null || true; done
    for i in "${!NODE_PID[@]}"; do
        BRIDGE_LOG=${NODE_LOG[$i]}
        wait_until 200 bridge_stopped || say "node n$i did not log 'stopped' within 20 s"
        stop_pid "${NODE_PID[$i]}" 0
    done
    NODE_PID=()
}

# run_cluster NAME NODES CONNS RATE [VAR=value ...]: NODES fresh nodes in
# cluster mode on one broker. pb-loadgen spreads CONNS connections (CONNS
# users, connection i = user u<i>) over nodes 1..NODES-1, round-robin; the
# last node holds none, so that its CPU per event is, measured directly,
# what a node pays for events of users it does not hold. pb-produce sends
# RATE events/s to the users round-robin: each event is for one node's
# user, and every node consumes every one. Each node's CPU (node 1's
# without the embedded broker's thread) is read over an idle window with
# every client connected, then over the traffic; per event figures are net
# of the idle rate (the consumer's empty fetches, timers).
run_cluster() {
    local name=$1 nodes=$2 conns=$3 rate=$4
    shift 4
    local -a venv=("$@")
    say "== $name: $nodes nodes, $conns connections over nodes 1..$((nodes - 1)), $rate events/s for ${SEND_S}s (${venv[*]:-defaults})"
    stop_bridge
    if [ -n "${PB_BENCH_BROKERS:-}" ]; then
        TOPIC=pb-bench-$RUN_ID-$name
        BOOTSTRAP=$PB_BENCH_BROKERS
        "$PRODUCE" --brokers "$BOOTSTRAP" --topic "$TOPIC" \
            --create-topic "${PB_BENCH_PARTITIONS:-1}" --count 0 >/dev/null
    else
        TOPIC=pushbridge.events
    fi
    local i t_start=$SECONDS
    launch_node 1 "$name" "${venv[@]}"
    # The embedded broker listens before node 1 has joined its group: the
    # others start meanwhile (each waits 5 s at start for an answer to
    # "create push.topic", which the embedded broker never gives).
    [ -n "${PB_BENCH_BROKERS:-}" ] || wait_until 600 node_bootstrap || wait_node 1 "$name"
    for ((i = 2; i <= nodes; i++)); do launch_node "$i" "$name" "${venv[@]}"; done
    for ((i = 1; i <= nodes; i++)); do wait_node "$i" "$name"; done
    local start_s=$((SECONDS - t_start))

    local ports="" ready_file=$WORK/$name.ready expect_file=$WORK/$name.expect
    for ((i = 1; i < nodes; i++)); do ports+=${ports:+,}${NODE_PUB[$i]}; done
    local lgj=$WORK/$name.loadgen.json pj=$WORK/$name.producer.json
    "$LOADGEN" --port "$ports" --conns "$conns" --users "$conns" --expect-file "$expect_file" \
        --duration $((SEND_S + 40)) --ready-file "$ready_file" >"$lgj" 2>"$WORK/$name.loadgen.err" &
    local lg_pid=$!
    if ! wait_until 900 test -e "$ready_file"; then
        say "loadgen for $name did not get ready"; cat "$WORK/$name.loadgen.err" >&2; exit 1
    fi

    local -a c0=() ci=() c1=() m0=() mi=() m1=() n0=() n1=() s0=() s1=() r0=() r1=()
    for ((i = 1; i <= nodes; i++)); do
        c0[$i]=$(proc_ticks "${NODE_PID[$i]}"); m0[$i]=$(mock_ticks "${NODE_PID[$i]}")
    done
    sleep "$CLUSTER_IDLE_S"
    for ((i = 1; i <= nodes; i++)); do
        ci[$i]=$(proc_ticks "${NODE_PID[$i]}"); mi[$i]=$(mock_ticks "${NODE_PID[$i]}")
        n0[$i]=$(node_consumed "$i"); s0[$i]=$(node_skipped "$i"); r0[$i]=$(rss_kb "${NODE_PID[$i]}")
    done
    local t0 t1
    t0=$(date +%s.%N)
    "$PRODUCE" --brokers "$BOOTSTRAP" --topic "$TOPIC" --users "$conns" --rate "$rate" \
        --duration "$SEND_S" --count 0 --timeout $((SEND_S + 60)) >"$pj" 2>"$WORK/$name.producer.err" || true
    local sent
    sent=$(jget "$pj" sent)
    echo "${sent:-0}" >"$expect_file.tmp" && mv "$expect_file.tmp" "$expect_file"
    wait "$lg_pid" || true
    for ((i = 1; i <= nodes; i++)); do
        wait_until 100 node_caught_up "$i" $((n0[i] + ${sent:-0})) ||
            say "$name: node n$i consumed only $(($(node_consumed "$i") - n0[i])) of ${sent:-0} within 10 s"
    done
    t1=$(date +%s.%N)
    for ((i = 1; i <= nodes; i++)); do
        c1[$i]=$(proc_ticks "${NODE_PID[$i]}"); m1[$i]=$(mock_ticks "${NODE_PID[$i]}")
        n1[$i]=$(node_consumed "$i"); s1[$i]=$(node_skipped "$i"); r1[$i]=$(rss_kb "${NODE_PID[$i]}")
        curl -sf "http://127.0.0.1:${NODE_INT[$i]}/metrics" >"$WORK/$name.n$i.metrics.txt" || true
    done
    stop_nodes
    [ -s "$lgj" ] || echo '{}' >"$lgj"
    [ -s "$pj" ] || echo '{}' >"$pj"
    run_references "$name" "$conns" "$conns" users 0 "$rate"

    # Per node: CPU over the traffic window, net of the idle rate.
    local window total_cpu=0 nodes_json="" f=$WORK/$name.scenario.json
    window=$(calc "$t1 - $t0")
    local obs_us=0 obs_net_us=0
    for ((i = 1; i <= nodes; i++)); do
        local idle_rate cpu net consumed skipped held us net_us mock_s
        idle_rate=$(calc "(${ci[i]} - ${c0[i]} - (${mi[i]} - ${m0[i]})) / $CLK_TCK / $CLUSTER_IDLE_S")
        cpu=$(calc "(${c1[i]} - ${ci[i]} - (${m1[i]} - ${mi[i]})) / $CLK_TCK")
        mock_s=$(calc "(${m1[i]} - ${mi[i]}) / $CLK_TCK")
        net=$(calc "$cpu - $idle_rate * $window")
        consumed=$((n1[i] - n0[i])); skipped=$(calc "${s1[i]} - ${s0[i]}")
        held=$([ "$i" -lt "$nodes" ] && echo $((conns / (nodes - 1))) || echo 0)
        us=$(calc "$consumed > 0 ? $cpu * 1e6 / $consumed : 0")
        net_us=$(calc "$consumed > 0 ? $net * 1e6 / $consumed : 0")
        total_cpu=$(calc "$total_cpu + $cpu")
        [ "$i" = "$nodes" ] && obs_us=$us obs_net_us=$net_us
        nodes_json+=$(printf '%s{"node":"n%s","connections":%s,"consumed":%s,"skipped":%s,' \
            "${nodes_json:+,}" "$i" "$held" "$consumed" "$skipped")
        nodes_json+=$(printf '"cpu_s":%s,"idle_cpu_per_s":%s,"cpu_net_of_idle_s":%s,' "$cpu" "$idle_rate" "$net")
        nodes_json+=$(printf '"cpu_us_per_event":%s,"cpu_us_per_event_net":%s,"embedded_kafka_cpu_s":%s,' \
            "$us" "$net_us" "$mock_s")
        nodes_json+=$(printf '"rss_before_kb":%s,"rss_end_kb":%s}' "${r0[i]}" "${r1[i]}")
        printf '%s n%s: %s connections; consumed %s, skipped unparsed %s; CPU %.3f s (idle %.1f %% of a core; net %.3f s) = %.2f us/event (%.2f net)%s\n' \
            "$name" "$i" "$held" "$consumed" "$skipped" "$cpu" "$(calc "$idle_rate * 100")" "$net" \
            "$us" "$net_us" "$([ "$i" = "$nodes" ] && echo ': holds none of the users' || true)" >>"$NOTES"
    done
    local frames fpc
    frames=$(jget "$lgj" events)
    fpc=$(calc "$total_cpu > 0 ? $frames / $total_cpu : 0")
    FPC[$name]=$fpc
    CLUSTER_OBS_US[$name]=$obs_net_us
    {
        printf '{"name":"%s","nodes":%s,"conns":%s,"users":%s,"rate":%s,"send_s":%s,' \
            "$name" "$nodes" "$conns" "$conns" "$rate" "$SEND_S"
        printf '"settings":"%s","start_s":%s,"idle_window_s":%s,"window_s":%s,' \
            "${venv[*]}" "$start_s" "$CLUSTER_IDLE_S" "$window"
        printf '"frames":%s,"frames_per_cluster_cpu_s":%s,"cluster_cpu_s":%s,' "$frames" "$fpc" "$total_cpu"
        printf '"not_held_cpu_us_per_event":%s,"not_held_cpu_us_per_event_net":%s,' "$obs_us" "$obs_net_us"
        printf '"per_node":[%s],' "$nodes_json"
        printf '"producer":%s,"loadgen":%s' "$(tr -d '\n' <"$pj")" "$(tr -d '\n' <"$lgj")"
        record_reference "$name" "$fpc"
        printf '}'
    } >"$f"
    SCENARIO_FILES+=("$f")
    local ms="/ 1000"
    printf '%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\n' \
        "$name" "$conns" "$(calc "$(jget "$pj" send_rate) + 0")" "$(calc "$(jget "$lgj" frames_per_s) + 0")" \
        "$fpc" \
        "$(calc "$(jget "$lgj" lat_p50_us) $ms")" "$(calc "$(jget "$lgj" lat_p99_us) $ms")" \
        "$(calc "$(jget "$lgj" lat_p999_us) $ms")" "$(calc "$(jget "$lgj" lat_max_us) $ms")" \
        "$(calc "${r1[1]} / 1024")" \
        "$(jget "$lgj" lost)/$(jget "$lgj" dup)/$(jget "$lgj" ooo)" \
        "$(calc "$(jget "$lgj" loadgen_cpu_share) * 100")" >>"$ROWS"
    [ "$(jget "$lgj" welcomed)" = "$conns" ] ||
        printf '%s: only %s of %s connections welcomed\n' "$name" "$(jget "$lgj" welcomed)" "$conns" >>"$NOTES"
    cluster_note
}

# Once both ran: what a node pays per event for users it does not hold,
# with the key skip and without, into NOTES and results.json's "cluster".
declare -A CLUSTER_OBS_US=()
CLUSTER_JSON=""
cluster_note() {
    local on=${CLUSTER_OBS_US[cluster-skip-w$W]:-} off=${CLUSTER_OBS_US[cluster-noskip-w$W]:-}
    [ -n "$on" ] && [ -n "$off" ] || return 0
    printf 'cluster (workers %s): a node pays %.2f us of CPU per event for users it does not hold with the key skip (history and state off), %.2f us without it (defaults): ratio %.3f\n' \
        "$W" "$on" "$off" "$(calc "$off > 0 ? $on / $off : 0")" >>"$NOTES"
    CLUSTER_JSON+=${CLUSTER_JSON:+,}$(printf '{"workers":%s,"not_held_us_per_event_skip":%s,"not_held_us_per_event_noskip":%s}' "$W" "$on" "$off")
}

# ---- workers (SPEC 11): the same scenario at workers 1 and 2 ----

# tag_workers N: "workers":W into the scenario files added since the Nth
tag_workers() {
    local i f
    for ((i = $1; i < ${#SCENARIO_FILES[@]}; i++)); do
        f=${SCENARIO_FILES[i]}
        sed -i "1s/^{/{\"workers\":$W,/" "$f"
    done
}

# Once a scenario ran for several workers values: the frames per bridge
# CPU-second of each against the first (workers 2 vs 1: what the hand-off
# between threads costs; issue 19 asks for 0.9 or better).
WORKERS_JSON=""
workers_note() {
    local s=$1 w base ratio
    base=${FPC[$s-w$FIRST_W]:-}
    [ -n "$base" ] && [ "$(calc "$base > 0")" = 1 ] || return 0
    for w in $WORKERS_LIST; do
        [ "$w" = "$FIRST_W" ] && continue
        [ -n "${FPC[$s-w$w]:-}" ] || continue
        ratio=$(calc "${FPC[$s-w$w]} / $base")
        printf '%s: frames per bridge CPU-s at workers %s / workers %s = %.0f / %.0f = %.3f\n' \
            "$s" "$w" "$FIRST_W" "${FPC[$s-w$w]}" "$base" "$ratio" >>"$NOTES"
        WORKERS_JSON+=${WORKERS_JSON:+,}$(printf '{"scenario":"%s","workers":%s,"vs_workers":%s,"frames_per_bridge_cpu_s":%s,"vs_frames_per_bridge_cpu_s":%s,"ratio":%s}' \
            "$s" "$w" "$FIRST_W" "${FPC[$s-w$w]}" "$base" "$ratio")
    done
}

# ---- unicast-max: the highest unicast rate sustained, per workers value ----

# run_max CONNS: the unicast load (CONNS connections and users) at rising
# rates, MAX_SEND_S each, on one bridge, until p99 passes 50 ms, anything is
# lost, duplicated or out of order, fewer than 97 % of the asked events/s go
# out, or the producer cannot send the rate. The last rate that passed is
# the sustained one. Each step also records what the other processes took
# of the cores: pb-loadgen, pb-produce, the embedded broker (rdk:mock).
declare -A MAX_OK=()
MAX_JSON=""
run_max() {
    local conns=$1 rate ok=0 why=""
    local save_share=$SHARE_BRIDGE save_send=$SEND_S
    SHARE_BRIDGE=1 SEND_S=$MAX_SEND_S
    stop_bridge
    local -a steps=($MAX_RATES)
    local i=0 tries=0
    while [ $i -lt ${#steps[@]} ]; do
        rate=${steps[i]}
        tries=$((tries + 1))
        local name=unicast-max-w$W-$((rate / 1000))k$([ $tries -gt 1 ] && echo "-$tries" || true)
        run_traffic "$name" kafka "$conns" "$conns" users 0 "$rate" 1
        local f=$WORK/$name.scenario.json lgj=$WORK/$name.loadgen.json pj=$WORK/$name.producer.json
        local p99 lost sent_rate out_rate window bridge_s mock_s lg_s pr_s total
        p99=$(calc "$(jget "$lgj" lat_p99_us) / 1000")
        lost=$(($(jget "$lgj" lost) + $(jget "$lgj" dup) + $(jget "$lgj" ooo)))
        sent_rate=$(jget "$pj" send_rate); out_rate=$(jget "$lgj" frames_per_s)
        window=$(jget "$f" window_s); bridge_s=$(jget "$f" bridge_cpu_s)
        mock_s=$(jget "$f" embedded_kafka_cpu_s)
        lg_s=$(calc "$(jget "$lgj" loadgen_cpu_user_s) + $(jget "$lgj" loadgen_cpu_sys_s)")
        pr_s=$(jget "$pj" producer_cpu_s)
        # shares of one core over the bridge's window (the loadgen's own run is
        # longer: set-up and a drain; its share is over its wall time)
        local b_pct m_pct l_pct p_pct mt_pct wk_pct
        b_pct=$(calc "$window > 0 ? $bridge_s * 100 / $window : 0")
        m_pct=$(calc "$window > 0 ? $mock_s * 100 / $window : 0")
        mt_pct=$(calc "$window > 0 ? $(jget "$f" main_thread_cpu_s) * 100 / $window : 0")
        wk_pct=$(calc "$window > 0 ? $(jget "$f" worker_threads_cpu_s) * 100 / $window : 0")
        l_pct=$(calc "$(jget "$lgj" loadgen_cpu_share) * 100")
        p_pct=$(calc "$(jget "$pj" send_s) > 0 ? $pr_s * 100 / $(jget "$pj" send_s) : 0")
        total=$(calc "$b_pct + $m_pct + $l_pct + $p_pct")
        why=""
        [ "$(calc "$p99 > 50")" = 1 ] && why="p99 $p99 ms > 50"
        [ "$lost" -gt 0 ] && why="${why:+$why, }lost/dup/ooo $lost"
        [ "$(calc "$sent_rate < 0.97 * $rate")" = 1 ] && why="${why:+$why, }pb-produce sent only $(calc "$sent_rate + 0")/s"
        [ "$(calc "$out_rate < 0.97 * $rate")" = 1 ] && why="${why:+$why, }only $(calc "$out_rate + 0") frames/s out"
        printf '%s: %s events/s: p99 %.1f ms, %s lost/dup/ooo, %.0f frames/s out; of the cores: bridge %.0f %% (main %.0f, workers %.0f), broker %.0f %%, pb-loadgen %.0f %%, pb-produce %.0f %%: %.0f %% of %s%s\n' \
            "unicast-max-w$W" "$rate" "$p99" "$lost" "$out_rate" "$b_pct" "$mt_pct" "$wk_pct" "$m_pct" \
            "$l_pct" "$p_pct" "$total" "$(($(nproc) * 100))" "${why:+: FAILED ($why)}" >>"$NOTES"
        MAX_JSON+=${MAX_JSON:+,}$(printf '{"workers":%s,"rate":%s,"passed":%s,"why":"%s","p99_ms":%s,"lost_dup_ooo":%s,"frames_per_s":%s,"bridge_core_pct":%s,"main_thread_core_pct":%s,"worker_threads_core_pct":%s,"broker_core_pct":%s,"loadgen_core_pct":%s,"producer_core_pct":%s,"total_core_pct":%s}' \
            "$W" "$rate" "$([ -z "$why" ] && echo true || echo false)" "$why" "$p99" "$lost" "$out_rate" \
            "$b_pct" "$mt_pct" "$wk_pct" "$m_pct" "$l_pct" "$p_pct" "$total")
        if [ -n "$why" ]; then
            # One more try at the same rate: on a shared machine a neighbour's
            # burst can fail a step that the bridge sustains.
            [ $tries -lt 2 ] && continue
            break
        fi
        ok=$rate tries=0 i=$((i + 1))
    done
    stop_bridge
    SHARE_BRIDGE=$save_share SEND_S=$save_send
    MAX_OK[$W]=$ok
    local atleast=""
    [ "$ok" = "${steps[${#steps[@]} - 1]}" ] && atleast="at least " # every step passed
    printf 'unicast-max: workers %s sustained %s%s events/s (%s connections; steps of %s s)\n' \
        "$W" "$atleast" "$ok" "$conns" "$MAX_SEND_S" >>"$NOTES"
    if [ "$W" != "$FIRST_W" ] && [ "${MAX_OK[$FIRST_W]:-0}" -gt 0 ]; then
        printf 'unicast-max: workers %s / workers %s = %.2f\n' "$W" "$FIRST_W" \
            "$(calc "$ok / ${MAX_OK[$FIRST_W]}")" >>"$NOTES"
    fi
}

# ---- the set ----

print_table() {
    say ""
    awk -F'\t' 'BEGIN {
        printf "%-18s %6s %9s %10s %11s %11s %8s %8s %8s %8s %8s %8s %9s %6s %14s\n",
            "scenario", "conns", "events/s", "frames/s", "frames/", "frames/", "p50", "p99",
            "p99.9", "max", "RSS", "RSS/conn", "lost/dup/", "loadgen", "CPU-s main/"
        printf "%-18s %6s %9s %10s %11s %11s %8s %8s %8s %8s %8s %8s %9s %6s %14s\n",
            "", "", "in", "out", "bridge-CPU-s", "loop-CPU-s", "ms", "ms", "ms", "ms", "MiB",
            "KiB", "ooo", "CPU%", "workers/rdk"
    }
    function num(v, fmt) { return v == "-" ? "-" : sprintf(fmt, v) }
    {
        printf "%-18s %6s %9s %10s %11s %11s %8s %8s %8s %8s %8s %8s %9s %6s %14s\n",
            $1, $2, num($3, "%.0f"), num($4, "%.0f"), num($5, "%.0f"), num($6, "%.0f"),
            num($7, "%.1f"), num($8, "%.1f"), num($9, "%.1f"), num($10, "%.1f"),
            num($11, "%.1f"), num($12, "%.2f"), $13, num($14, "%.0f"), ($15 == "" ? "-" : $15)
    }' "$ROWS"
    [ -s "$REF_ROWS" ] && print_ref_table
    [ -s "$NOTES" ] && { say ""; cat "$NOTES" >&2; }
    return 0
}

print_ref_table() {
    say ""
    say "Against pb-sendref, the same load from a plain epoll loop: send = one send() per frame,"
    say "writev = one writev() per connection queue; bridge/ref = the bridge's frames per CPU-second"
    say "as a fraction of the reference's (1 = this machine's limit for the load). Kafka p99 ="
    say "pb-kafkaref's: the same producer, broker and consumer settings with no sockets, the floor"
    say "under the bridge's latency (its p99 is in the table above)."
    awk -F'\t' 'BEGIN {
        printf "%-18s %12s %12s %8s %8s %8s %6s %12s %8s %8s %9s\n", "scenario", "frames/",
            "send", "bridge/", "ref p99", "Kafka", "ref", "writev", "frames/", "bridge/", "ref lost/"
        printf "%-18s %12s %12s %8s %8s %8s %6s %12s %8s %8s %9s\n", "", "bridge-CPU-s",
            "frames/CPU-s", "send", "ms", "p99 ms", "CPU%", "frames/CPU-s", "write", "writev", "dup/ooo"
    }
    function num(v, fmt) { return v == "-" ? "-" : sprintf(fmt, v) }
    {
        printf "%-18s %12s %12s %8s %8s %8s %6s %12s %8s %8s %9s\n", $1, num($2, "%.0f"),
            num($3, "%.0f"), num($4, "%.3f"), num($5, "%.1f"), num($6, "%.1f"), num($7, "%.0f"),
            num($8, "%.0f"), num($9, "%.2f"), num($10, "%.3f"), $11
    }' "$REF_ROWS"
}

write_results() {
    local commit kafka first=1 f
    # Figures taken under a profiler are not the bridge's: keep them apart.
    if [ "$PROFILE" = 1 ] || [ "$CALLGRIND" = 1 ]; then
        mkdir -p "$PROFDIR"
        RESULTS=$PROFDIR/results.json
    fi
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff --quiet HEAD -- src include 2>/dev/null || commit="$commit+dirty"
    kafka=${PB_BENCH_BROKERS:+"real broker $PB_BENCH_BROKERS"}
    kafka=${kafka:-"embedded (--dev, librdkafka mock cluster)"}
    {
        printf '{"date":"%s","commit":"%s","mode":"%s","kafka":"%s",' \
            "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$MODE" "$kafka"
        # commit is this tree's (the tools'); the bridge may be another build
        printf '"bridge_bin":"%s",' "$BRIDGE_BIN"
        printf '"host":{"cpus":%s,"kernel":"%s","nofile_hard":%s},' \
            "$(nproc)" "$(uname -r)" "$(ulimit -Hn)"
        printf '"workers":[%s],' "${WORKERS_LIST// /,}"
        [ -z "$STATE_COST_JSON" ] || printf '"state_cost":[%s],' "$STATE_COST_JSON"
        [ -z "$CLUSTER_JSON" ] || printf '"cluster":[%s],' "$CLUSTER_JSON"
        [ -z "$WORKERS_JSON" ] || printf '"workers_ratio":[%s],' "$WORKERS_JSON"
        [ -z "$MAX_JSON" ] || printf '"unicast_max":[%s],' "$MAX_JSON"
        [ -z "$INPUTS_JSON" ] || printf '"inputs":%s,' "$INPUTS_JSON"
        printf '"scenarios":['
        for f in "${SCENARIO_FILES[@]}"; do
            [ $first = 1 ] || printf ','
            first=0
            cat "$f"
        done
        printf ']}\n'
    } >"$RESULTS"
    say "wrote $RESULTS"
}

# The unicast load once per format, each on a fresh bridge with its rule.
run_inputs_e2e() {
    local conns=$1 rate=$2 f topic rule
    local ref=$REF
    REF=0
    for f in envelope json json-field ce-binary ce-structured; do
        topic=pushbridge.events
        [ -n "${PB_BENCH_BROKERS:-}" ] && topic=pb-bench-$RUN_ID-in-$f
        case $f in
        envelope) rule="" ;;
        json) rule='"format":"json","event":"bench"' ;;
        json-field) rule='"format":"json","target":"field:/u","event":"bench"' ;;
        ce-*) rule='"format":"cloudevents","target":"ce:subject"' ;;
        esac
        SCEN_FRESH=1 SCEN_PROD=(--format "$f") SCEN_ENV=()
        [ -z "$rule" ] || SCEN_ENV=("PUSHBRIDGE_KAFKA_INPUTS=[{\"topic\":\"$topic\",$rule}]")
        run_traffic "in-$f" kafka "$conns" "$conns" users 0 "$rate" 1
    done
    SCEN_FRESH=0 SCEN_PROD=() SCEN_ENV=()
    REF=$ref
}

# pb-inputbench: the read step of each kafka.inputs format (its table goes
# to the notes, its JSON to results.json's "inputs").
INPUTS_JSON=""
run_inputs() {
    local n=$1 out=$WORK/inputs.txt
    say "== inputs: each kafka.inputs format read $n times on one core"
    "$BUILD/bench/pb-inputbench" "$n" >"$out" || { say "pb-inputbench failed"; exit 1; }
    INPUTS_JSON=$(tail -n 1 "$out")
    { echo "inputs (pb-inputbench, the read step alone, fastest of 5 rounds):"; sed '$d' "$out"; } >>"$NOTES"
    sed '$d' "$out" >&2
}

main() {
    build
    # Each connection is a descriptor, in the bridge and in the loadgen.
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    ulimit -n "$hard"
    local nofile
    nofile=$(ulimit -n)

    local big=10000 fan=1000 send=10 idle=15000 logins=15000 tasks=100000 inputs_n=1000000
    # slow-base and slow run the same load, without and with 10 % of the
    # connections stalled, at a rate the bridge sustains here, so that the
    # readers' p99 can be compared (at saturation it is queueing noise).
    local uni_rate=20000 fan_rate=50 bc_rate=5 http_rate=20000 slow_rate=10000
    # cluster: nodes (the last one holds no connection), connections, events/s
    local cl_nodes=${PB_BENCH_CLUSTER_NODES:-3} cl_conns=10000 cl_rate=10000
    CLUSTER_IDLE_S=2
    if [ "$MODE" = quick ]; then
        big=1000 fan=200 send=2 idle=2000 logins=2000 tasks=20000 inputs_n=100000
        uni_rate=5000 fan_rate=50 bc_rate=20 http_rate=2000 slow_rate=2500
        cl_nodes=${PB_BENCH_CLUSTER_NODES:-2} cl_conns=1000 cl_rate=2500 CLUSTER_IDLE_S=1
    fi
    [ "$cl_nodes" -ge 2 ] || { say "PB_BENCH_CLUSTER_NODES must be at least 2"; exit 2; }
    # The bridge keeps a few dozen descriptors for itself.
    local fdmax=$((nofile - 200))
    [ "$BIG" = 1 ] && idle=$fdmax
    [ "$idle" -gt $fdmax ] && idle=$fdmax
    [ "$logins" -gt $fdmax ] && logins=$fdmax
    SEND_S=$send
    SHARE_BRIDGE=0 SHARED_RUNS=0
    [ "$MODE" = quick ] && SHARE_BRIDGE=1
    IDLE_SETTLE_S=2 IDLE_WINDOW_S=3
    # unicast-max's steps (events/s) and their sending time
    MAX_RATES=${PB_BENCH_MAX_RATES:-"10000 15000 20000 25000 30000 35000 40000 50000 60000 70000 80000 100000"}
    MAX_SEND_S=6
    [ "$MODE" = quick ] && MAX_RATES=${PB_BENCH_MAX_RATES:-"5000 10000"} MAX_SEND_S=2
    [ "$MODE" = quick ] && IDLE_SETTLE_S=0.5 IDLE_WINDOW_S=1

    local s t0=$SECONDS nfiles
    for s in $SCENARIOS; do
        # tasks-100k has no clients and inputs no bridge: workers do not
        # enter them; inputs-e2e compares formats, not workers. Each runs once.
        local wl=$WORKERS_LIST
        case $s in tasks-100k | inputs | inputs-e2e) wl=$LAST_W ;; esac
        for W in $wl; do
            local ts=$SECONDS n=-w$W
            nfiles=${#SCENARIO_FILES[@]}
            say "-- workers $W"
            case $s in
            unicast) run_traffic unicast$n kafka $big $big users 0 $uni_rate 1 ;;
            fanout) run_traffic fanout$n kafka $fan 1 users 0 $fan_rate 1 ;;
            broadcast) run_traffic broadcast$n kafka $big $big '*' 0 $bc_rate 1 ;;
            http-single) run_traffic http-single$n http $big $big users 0 $http_rate 1 ;;
            http-batch) run_traffic http-batch$n http $big $big users 0 $uni_rate 100 ;;
            slow-base) run_traffic slow-base$n kafka $big $big users 0 $slow_rate 1 ;;
            slow) run_traffic slow$n kafka $big $big users 0.1 $slow_rate 1 ;;
            idle) run_idle idle$n $idle $IDLE_WINDOW_S ;;
            logins) run_logins $logins ;;
            logins-cluster) run_logins $logins logins-cluster PUSHBRIDGE_CLUSTER_MODE=kafka \
                PUSHBRIDGE_CLUSTER_NODE_NAME=bench-1 ;;
            # These name their size: --quick does not shrink them.
            unicast-10k) run_traffic unicast-10k$n kafka 10000 10000 users 0 10000 1 ;;
            fanout-10k) run_traffic fanout-10k$n kafka 10000 1 users 0 5 1 ;;
            fdlimit) run_idle fdlimit$n $fdmax 5 ;;
            state | state-off) run_state "$s$n" $big $uni_rate ;;
            tasks-100k) run_tasks $tasks ;;
            inputs) run_inputs $inputs_n ;;
            inputs-e2e) run_inputs_e2e $big $uni_rate ;;
            cluster)
                run_cluster cluster-skip$n $cl_nodes $cl_conns $cl_rate "${STATE_OFF_ENV[@]}"
                run_cluster cluster-noskip$n $cl_nodes $cl_conns $cl_rate
                ;;
            unicast-max) run_max $big ;;
            esac
            tag_workers "$nfiles"
            say "   ($((SECONDS - ts)) s)"
        done
        workers_note "$s"
    done
    stop_bridge
    say "all scenarios: $((SECONDS - t0)) s"
    print_table
    write_results
}

main
