#!/usr/bin/env bash
# Memory soak and rolling restart of pushbridge (see tests/soak/README.md).
#
#   tests/soak/run.sh            memory: 100,000 connections (several minutes);
#                                rolling restart: 2,000 clients, behind a
#                                health-checked then a blind balancer (~3 minutes)
#   tests/soak/run.sh --quick    10,000 connections and 300 clients, for CI
#                                (< 3 minutes and ~1 minute)
#   tests/soak/run.sh --dev      the memory soak on `pushbridge --dev` (embedded
#                                Kafka) instead of a real broker; combines with
#                                --quick; no rolling restart (it needs three
#                                nodes on one broker)
#   --memory-only / --rolling-only   one of the two
#   other arguments go to soak.py (tests/soak/soak.py --help); rolling.py
#   gets --quick and --keep (tests/soak/rolling.py --help for its knobs)
#
# Builds what is missing or stale: build/ (Release) unless PB_BINARY is set,
# build-asan/ (ASan+UBSan, for the leak check) unless PB_ASAN_BINARY is set or
# --skip-leak is given. Fetches the Kafka jars with Maven (as tests/run.sh)
# unless --dev. Exits non-zero if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DEV=0
LEAK=1
MEMORY=1
ROLLING=1
SOAK_ARGS=()
ROLLING_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        --skip-leak) LEAK=0 ;;
        --memory-only) ROLLING=0; continue ;;
        --rolling-only) MEMORY=0; LEAK=0; continue ;;
        --quick|--keep) ROLLING_ARGS+=("$arg") ;;
        -h|--help) python3 tests/soak/soak.py --help; exec python3 tests/soak/rolling.py --help ;;
    esac
    SOAK_ARGS+=("$arg")
done
if ((DEV)); then ROLLING=0; fi

log() { printf '==> %s\n' "$*"; }

need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
if ((ROLLING)); then
    # node 18+ from anywhere (Debian's nodejs, or NodeSource's with its own npm)
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if ((!DEV)); then
    command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
    [[ -f tests/kafka/lib/kafka_2.13-3.9.1.jar ]] || command -v mvn >/dev/null 2>&1 || need+=(maven)
fi
if ((${#need[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "missing: ${need[*]} (run tests/run.sh once as root, or install them)" >&2
        exit 2
    fi
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

scripts/deps.sh # the build's own packages, as for the daemon

if ((!DEV)) && [[ ! -f tests/kafka/lib/kafka_2.13-3.9.1.jar ]]; then
    log "fetching the Kafka broker jars with Maven"
    (cd tests/kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib)
fi

if [[ -z "${PB_BINARY:-}" ]]; then
    [[ -f build/CMakeCache.txt ]] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
    log "building build/pushbridge"
    cmake --build build -j "$(nproc)" --target pushbridge
fi
if ((LEAK)) && [[ -z "${PB_ASAN_BINARY:-}" ]]; then
    [[ -f build-asan/CMakeCache.txt ]] ||
        cmake -S . -B build-asan -DPB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    log "building build-asan/pushbridge (AddressSanitizer, for the leak check)"
    cmake --build build-asan -j "$(nproc)" --target pushbridge
fi

if ((ROLLING)) && [[ ! -f tests/soak/node_modules/ws/package.json ]]; then
    log "installing the rolling restart's clients' one package, ws (npm ci)"
    (cd tests/soak && npm ci --no-audit --no-fund)
fi

rc=0
if ((MEMORY)); then
    python3 -u tests/soak/soak.py "${SOAK_ARGS[@]}" || rc=1
fi
if ((ROLLING)); then
    # Behind a health-checked balancer, then a blind one (clients meet the
    # stopped node and the starting one: what found the resume during the
    # rebuild, test_64).
    for balancer in health blind; do
        log "rolling restart of three bridges under load ($balancer balancer)"
        python3 -u tests/soak/rolling.py --balancer "$balancer" "${ROLLING_ARGS[@]}" || rc=1
    done
fi
exit "$rc"
