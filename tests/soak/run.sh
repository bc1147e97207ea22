#!/usr/bin/env bash
# Memory soak of pushbridge (see tests/soak/README.md).
#
#   tests/soak/run.sh            100,000 connections (several minutes)
#   tests/soak/run.sh --quick    10,000 connections, for CI (< 3 minutes)
#   tests/soak/run.sh --dev      use `pushbridge --dev` (embedded Kafka) instead
#                                of a real broker; combines with --quick
#   other arguments go to soak.py (tests/soak/soak.py --help)
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
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        --skip-leak) LEAK=0 ;;
        -h|--help) exec python3 tests/soak/soak.py --help ;;
    esac
done

log() { printf '==> %s\n' "$*"; }

need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
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

exec python3 -u tests/soak/soak.py "$@"
