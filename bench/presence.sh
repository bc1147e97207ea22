#!/usr/bin/env bash
# What presence (SPEC 8, src/kafka/presence.c) costs per login, on the node
# that takes the logins and on a node that only reads about them.
#
#   bench/presence.sh [LOGINS]     (default 15000; about 30 s on 2 cores)
#
# Two nodes in cluster.mode kafka on node 1's --dev embedded broker: n1 takes
# LOGINS WebSocket logins from pb-loadgen (one user each, as fast as they go),
# which then all close; n2 holds no client and only reads n1's presence. It
# prints each node's CPU over the logins and the closes, the presence messages
# and bytes n1 wrote, and n2's CPU per login+close read. Uses the binaries
# bench/run.sh builds into build-bench/ (run that once first).
set -euo pipefail

LOGINS=${1:-15000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PB_BENCH_BRIDGE:-$ROOT/build-bench/pushbridge}
LOADGEN=$ROOT/build-bench/bench/pb-loadgen
WORK=$(mktemp -d)
CLK_TCK=$(getconf CLK_TCK)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$WORK"' EXIT

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
wait_for() { local i; for i in $(seq 1 600); do "$@" && return 0; sleep 0.1; done; return 1; }
ready() { curl -sf -o /dev/null "http://127.0.0.1:$1/readyz"; }
calc() { awk "BEGIN { printf \"%.3g\", $1 }"; }

start() { # name public internal [env...]
    local name=$1 pub=$2 int=$3
    shift 3
    env PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:"$pub" PUSHBRIDGE_LISTEN_INTERNAL=127.0.0.1:"$int" \
        PUSHBRIDGE_CLUSTER_MODE=kafka PUSHBRIDGE_CLUSTER_NODE_NAME="$name" \
        PUSHBRIDGE_WS_MAX_CONNECTIONS=1000000 PUSHBRIDGE_LOG_LEVEL=warn "$@" \
        "$BIN" "${ARGS[@]}" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    wait_for ready "$int" || { echo "$name did not get ready" >&2; cat "$WORK/$name.log" >&2; exit 1; }
}

ARGS=(--dev)
start n1 18480 18481 PUSHBRIDGE_KAFKA_PROPERTIES=fetch.wait.max.ms=1
N1=${PIDS[0]}
boot=$(curl -sf http://127.0.0.1:18481/stats | grep -o '"kafka_bootstrap":"[^"]*"' | cut -d'"' -f4)
ARGS=()
start n2 18490 18491 PUSHBRIDGE_KAFKA_BROKERS="$boot" PUSHBRIDGE_AUTH_MODE=none
N2=${PIDS[1]}
sleep 2 # both idle: the rate we take off

i1=$(ticks "$N1"); i2=$(ticks "$N2"); sleep 2
idle1=$(( $(ticks "$N1") - i1 )); idle2=$(( $(ticks "$N2") - i2 ))

a1=$(ticks "$N1"); a2=$(ticks "$N2"); t0=$(date +%s.%N)
in0=$(metric 18491 'pushbridge_presence_messages_total{direction="in"}')
"$LOADGEN" --port 18480 --conns "$LOGINS" --users "$LOGINS" --duration 300 --setup-timeout 120 \
    --ready-file "$WORK/ready" >"$WORK/lg.json" 2>"$WORK/lg.err" &
LG=$!
wait_for test -e "$WORK/ready" || { echo "loadgen did not get ready" >&2; cat "$WORK/lg.err" >&2; exit 1; }
kill -TERM "$LG"; wait "$LG" || true
# n2 has heard of every close (its view of n1 is empty again)
empty() { curl -sf http://127.0.0.1:18491/cluster | grep -q '"name":"n1","version":"[^"]*","connections":0,"users":0'; }
wait_for empty || echo "n2 did not see every close within 60 s" >&2
t1=$(date +%s.%N)
b1=$(ticks "$N1"); b2=$(ticks "$N2")
secs=$(calc "$t1 - $t0")
bytes=$(metric 18481 pushbridge_presence_bytes_written_total)
msgs=$(metric 18481 'pushbridge_presence_messages_total{direction="out"}')
in1=$(metric 18491 'pushbridge_presence_messages_total{direction="in"}')
c1=$(calc "($b1 - $a1) / $CLK_TCK"); c2=$(calc "($b2 - $a2) / $CLK_TCK")
n2net=$(calc "(($b2 - $a2) - $idle2 / 2 * $secs) / $CLK_TCK")
printf 'presence: %s logins then closes on n1 in %s s; n1 CPU %s s (%s us per login+close, all of it: WebSocket, hub, presence)\n' \
    "$LOGINS" "$secs" "$c1" "$(calc "$c1 / $LOGINS * 1e6")"
printf 'presence: n1 wrote %s presence messages, %s bytes (%s bytes per login+close)\n' \
    "$msgs" "$bytes" "$(calc "$bytes / $LOGINS")"
printf 'presence: n2 (no clients) read %s messages; CPU %s s, %s s net of its idle rate (%s %% of a core): %s us per login+close read\n' \
    "$((in1 - in0))" "$c2" "$n2net" "$(calc "$idle2 / 2 / $CLK_TCK * 100")" "$(calc "$n2net / $LOGINS * 1e6")"
