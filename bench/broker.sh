# Sourced by bench/run.sh (--kafka) and bench/cf/run.sh: starts one Apache
# Kafka broker in KRaft mode from tests/kafka/lib (the jars the test suite
# fetches with Maven, fetched here the same way when missing) through
# tests/integration/kafka_harness.py, as the integration tests run it.
#
#   start_broker DIR   sets BROKER_PID (a job of the calling shell: the
#                      harness stops the broker on SIGTERM, within 30 s)
#                      and BROKER_ADDR (HOST:PORT); the harness's output goes
#                      to DIR/broker.out, the broker's files and log to
#                      DIR/kafka/. Returns 1 with that output on stderr when
#                      it does not come up in 150 s.

start_broker() {
    local dir=$1 repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ ! -f "$repo/tests/kafka/lib/kafka_2.13-3.9.1.jar" ]; then
        command -v mvn >/dev/null && command -v java >/dev/null || {
            echo "a real broker needs java and mvn (tests/run.sh installs them)" >&2
            return 1
        }
        (cd "$repo/tests/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib) ||
            return 1
    fi
    rm -f "$dir/broker.addr"
    mkdir -p "$dir/kafka"
    (cd "$repo/tests/integration" && exec python3 -c '
import os, signal, sys
from kafka_harness import KafkaBroker
b = KafkaBroker(workdir=sys.argv[2])
b.start(timeout=120)
open(sys.argv[1] + ".tmp", "w").write(b.bootstrap)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (b.stop(), sys.exit(0)))
while True:
    signal.pause()
' "$dir/broker.addr" "$dir/kafka") >"$dir/broker.out" 2>&1 &
    BROKER_PID=$!
    local i
    for ((i = 0; i < 1500; i++)); do
        [ -s "$dir/broker.addr" ] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ ! -s "$dir/broker.addr" ]; then
        cat "$dir/broker.out" >&2
        return 1
    fi
    BROKER_ADDR=$(cat "$dir/broker.addr")
}
