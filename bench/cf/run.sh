#!/usr/bin/env bash
# pushbridge against Centrifugo, side by side on one real Kafka broker
# (docs/PERFORMANCE.md "Against Centrifugo"; bench/cf/README.md). Not run by CI.
#
#   CENTRIFUGO=/path/to/centrifugo bench/cf/run.sh [options]
#
#   --runs N          runs of each scenario per server (default 2; the table
#                     gives medians)
#   --workers 1,2     pushbridge's workers (PUSHBRIDGE_WORKERS) to measure
#   --only a,b        scenarios: unicast fanout (default both)
#   --send S          seconds of sending per run (default 10)
#   --conns N         connections (default 10000)
#   --fanout-rate R   events/s to the one user of fan-out (default 5)
#   --unicast-rate R  events/s over the N users of unicast (default 20000)
#   --no-cf           pushbridge only (CENTRIFUGO not needed): a check of the
#                     set-up, no ratios
#
# Environment: CENTRIFUGO (required: a Centrifugo binary, see README.md),
# PB_BINARY (default build-rel/pushbridge; the bench/pb-produce of its build tree creates
# the topics), BROKERS=HOST:PORT (default: a KRaft broker started here from
# tests/kafka/lib with tests/integration/kafka_harness.py, stopped at the
# end), GO (default: go on PATH, else /usr/local/go/bin/go).
#
# Each run: a fresh topic (1 partition) and consumer group; the server is
# started on it; `cfbench load` logs N connections in (pushbridge: native
# login, auth.mode none; Centrifugo: HS256 token, server-side subscription
# to the personal channel #u<k>); then `cfbench produce` sends the events
# (the same keys and data for both, each in its server's framing) and writes
# its sent count for the loader, which stops once every expected event came
# or nothing came for 3 s. Server CPU = utime + stime of the whole process
# from /proc/PID/stat from just before the producer starts to the loader's
# exit; frames per server CPU-second = events received by the clients over
# that. RSS: VmRSS with every client connected, before the traffic. The
# 1-minute load average is taken at the start of each run. Raw JSON of every
# run goes to build-cf/logs/; the table to stdout and build-cf/results.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$REPO/build-cf
LOGS=$OUT/logs
NO_CF=0 RUNS=2 WORKERS=1,2 ONLY=unicast,fanout SEND_S=10 CONNS=10000 FAN_RATE=5 UNI_RATE=20000
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --send) SEND_S=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --fanout-rate) FAN_RATE=$2; shift 2 ;;
    --unicast-rate) UNI_RATE=$2; shift 2 ;;
    --no-cf) NO_CF=1; shift ;;
    -h | --help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$NO_CF" = 0 ]; then
    : "${CENTRIFUGO:?set CENTRIFUGO=/path/to/centrifugo (bench/cf/README.md says how to get v6.9.1)}"
    [ -x "$CENTRIFUGO" ] || { echo "run.sh: $CENTRIFUGO is not executable" >&2; exit 2; }
fi
PB_BINARY=${PB_BINARY:-$REPO/build-rel/pushbridge}
PB_PRODUCE=${PB_PRODUCE:-$(dirname "$PB_BINARY")/bench/pb-produce}
for b in "$PB_BINARY" "$PB_PRODUCE"; do
    [ -x "$b" ] || { echo "run.sh: $b missing (cmake --build the Release tree first)" >&2; exit 2; }
done
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
mkdir -p "$LOGS"
(cd "$REPO/bench/cf" && "$GO" build -o "$OUT/cfbench" .)
CFB=$OUT/cfbench
RUN_ID=$(date +%s)
SECRET=cfbench-secret

say() { echo "[cf-bench] $*" >&2; }
pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
jnum() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
wait_port() { # PORT PID: until the port accepts or the process is gone
    local i
    for i in $(seq 1 300); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

BROKER_PID=
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    true
}
trap cleanup EXIT

if [ -z "${BROKERS:-}" ]; then
    say "starting a KRaft broker (tests/kafka/lib)"
    . "$REPO/bench/broker.sh"
    start_broker "$LOGS" || exit 1
    BROKERS=$BROKER_ADDR
fi
say "broker $BROKERS"

# start_server KIND TOPIC W: sets SERVER_PID, PORT, URL
start_server() {
    local kind=$1 topic=$2 w=$3
    PORT=$(pick_port)
    if [ "$kind" = pb ]; then
        local int
        int=$(pick_port)
        env PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:$PORT PUSHBRIDGE_LISTEN_INTERNAL=127.0.0.1:$int \
            PUSHBRIDGE_WS_MAX_CONNECTIONS_PER_USER=100000 PUSHBRIDGE_WS_MAX_CONNECTIONS=1000000 \
            PUSHBRIDGE_WORKERS="$w" PUSHBRIDGE_KAFKA_BROKERS="$BROKERS" \
            PUSHBRIDGE_KAFKA_TOPICS="$topic" PUSHBRIDGE_KAFKA_GROUP_ID="$topic" \
            PUSHBRIDGE_AUTH_MODE=none "$PB_BINARY" >"$LOGS/$topic.server.log" 2>&1 &
        URL=ws://127.0.0.1:$PORT/ws
    else
        cat >"$LOGS/$topic.centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $PORT},
  "log": {"level": "error"},
  "client": {
    "token": {"hmac_secret_key": "$SECRET"},
    "allowed_origins": ["*"],
    "subscribe_to_user_personal_channel": {"enabled": true}
  },
  "consumers": [{
    "name": "cfbench", "enabled": true, "type": "kafka",
    "kafka": {"brokers": ["$BROKERS"], "topics": ["$topic"], "consumer_group": "$topic"}
  }]
}
EOF
        "$CENTRIFUGO" --config "$LOGS/$topic.centrifugo.json" >"$LOGS/$topic.server.log" 2>&1 &
        URL=ws://127.0.0.1:$PORT/connection/websocket
    fi
    SERVER_PID=$!
    wait_port "$PORT" "$SERVER_PID" || { say "server did not start:"; cat "$LOGS/$topic.server.log" >&2; exit 1; }
}

ROWS=$OUT/rows.tsv
: >"$ROWS"
# run_one SERVER(pb-w1|pb-w2|cf) SCENARIO RUN
run_one() {
    local server=$1 scen=$2 run=$3 kind=pb w=1
    case $server in cf) kind=cf ;; pb-w*) w=${server#pb-w} ;; esac
    local topic=cfb-$RUN_ID-$server-$scen-$run users rate
    local -a key=()
    if [ "$scen" = unicast ]; then users=$CONNS rate=$UNI_RATE; else users=1 rate=$FAN_RATE; fi
    [ "$scen" = fanout ] && key=(-key u0)
    "$PB_PRODUCE" --brokers "$BROKERS" --topic "$topic" --create-topic 1 --count 0 >/dev/null
    local la
    la=$(loadavg)
    start_server "$kind" "$topic" "$w"
    local rss0 ready=$LOGS/$topic.ready expect=$LOGS/$topic.expect
    rss0=$(rss_kb "$SERVER_PID")
    "$CFB" load -proto "$kind" -url "$URL" -secret "$SECRET" -conns "$CONNS" -users "$users" \
        -ready-file "$ready" -expect-file "$expect" >"$LOGS/$topic.load.json" 2>"$LOGS/$topic.load.err" &
    local lg=$!
    while [ ! -e "$ready" ]; do
        kill -0 $lg 2>/dev/null || { say "loader failed"; cat "$LOGS/$topic.load.err" >&2; exit 1; }
        sleep 0.1
    done
    sleep 1 # let the last logins' work settle before the CPU window opens
    local rss1 c0 c1 hz
    rss1=$(rss_kb "$SERVER_PID")
    c0=$(ticks "$SERVER_PID")
    "$CFB" produce -brokers "$BROKERS" -topic "$topic" -format "$kind" -users "$users" "${key[@]}" \
        -rate "$rate" -duration "$SEND_S" >"$LOGS/$topic.produce.json"
    jnum "$LOGS/$topic.produce.json" sent >"$expect.tmp" && mv "$expect.tmp" "$expect"
    wait $lg
    c1=$(ticks "$SERVER_PID")
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    hz=$(getconf CLK_TCK)
    python3 - "$LOGS/$topic.load.json" "$server" "$scen" "$run" "$la" "$rss0" "$rss1" \
        "$(( c1 - c0 ))" "$hz" >>"$ROWS" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
server, scen, run, la, rss0, rss1, ticks, hz = sys.argv[2:10]
cpu = int(ticks) / int(hz)
fps = j["frames"] / cpu if cpu > 0 else 0
print("\t".join(str(x) for x in (server, scen, run, la, j["welcomed"], j["sent"], j["frames"],
      f"{cpu:.2f}", f"{fps:.0f}", f"{int(rss1)/1024:.0f}", f"{(int(rss1)-int(rss0))/max(j['welcomed'],1):.2f}",
      j["p50_ms"], j["p99_ms"], j["lost"], j["dup"], j["ooo"], f"{j['loadgen_cpu_s']:.1f}")))
EOF
    say "$(tail -1 "$ROWS")"
}

SERVERS=()
IFS=, read -ra WS <<<"$WORKERS"
for w in "${WS[@]}"; do SERVERS+=("pb-w$w"); done
[ "$NO_CF" = 1 ] || SERVERS+=(cf)
IFS=, read -ra SCENS <<<"$ONLY"
for scen in "${SCENS[@]}"; do
    for run in $(seq 1 "$RUNS"); do
        for server in "${SERVERS[@]}"; do run_one "$server" "$scen" "$run"; done
    done
done

python3 - "$ROWS" "$CONNS" "$UNI_RATE" "$FAN_RATE" "$SEND_S" <<'EOF' | tee "$OUT/results.md"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
conns, uni, fan, send = sys.argv[2:6]
print(f"{conns} connections; unicast {uni} events/s over {conns} users; fan-out {fan} events/s "
      f"to one user x {conns} connections; {send} s of sending; medians over runs\n")
print("| server | scenario | runs | load avg (1 min) | frames | server CPU-s | frames / server CPU-s "
      "| RSS MiB (clients on) | RSS KiB/conn | p50 ms | p99 ms | lost/dup/ooo |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
groups = {}
for r in rows:
    groups.setdefault((r[1], r[0]), []).append(r)
med = lambda rs, i: statistics.median(float(r[i]) for r in rs)
fps = {}
for (scen, server), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "cf", kv[0][1])):
    fps[(scen, server)] = med(rs, 8)
    print(f"| {server} | {scen} | {len(rs)} | {' / '.join(r[3] for r in rs)} | {med(rs, 6):.0f} "
          f"| {med(rs, 7):.2f} | {med(rs, 8):,.0f} | {med(rs, 9):.0f} | {med(rs, 10):.2f} "
          f"| {med(rs, 11):.2f} | {med(rs, 12):.2f} | "
          f"{sum(int(r[13]) for r in rs)}/{sum(int(r[14]) for r in rs)}/{sum(int(r[15]) for r in rs)} |")
print("\n| scenario | server | frames / server CPU-s (median) | pb/cf |")
print("|---|---|---|---|")
for (scen, server), v in sorted(fps.items()):
    if server == "cf":
        continue
    cf = fps.get((scen, "cf"))
    print(f"| {scen} | {server} | {v:,.0f} | {v / cf:.2f} |" if cf else f"| {scen} | {server} | {v:,.0f} | - |")
for scen in sorted({s for s, _ in fps}):
    if (scen, "cf") in fps:
        print(f"| {scen} | cf | {fps[(scen, 'cf')]:,.0f} | 1.00 |")
print("\nPer run (server scenario run load frames CPU-s frames/CPU-s RSS-MiB p50 p99 lost dup ooo loadgen-CPU-s):")
for r in rows:
    print("    " + " ".join(r[i] for i in (0, 1, 2, 3, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16)))
EOF
