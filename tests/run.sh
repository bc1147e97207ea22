#!/usr/bin/env bash
# The one test command: installs what is missing (Debian 12, as root), fetches
# the Kafka jars, builds, runs the unit tests (ctest) and the integration
# tests (pytest against the real binary and a real Kafka broker).
#
#   tests/run.sh                 Release build in build/
#   tests/run.sh --asan          Debug + ASan/UBSan build in build-asan/
#   tests/run.sh [--asan] ARGS   extra ARGS go to pytest (e.g. -k fanout -x)
#   PB_TEST_IMAGE=1 tests/run.sh also builds the container image (podman)
#
# Exits non-zero if any step or any test failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ASAN=0
if [[ "${1:-}" == "--asan" ]]; then
    ASAN=1
    shift
fi

log() { printf '\n==> %s\n' "$*"; }

# ---- (a) dependencies ------------------------------------------------------
# A package counts as present when dpkg says so, or (for the tools that may
# come from elsewhere, e.g. a JDK or a pip-installed pytest) when the tool
# itself answers.
PACKAGES=(build-essential cmake pkg-config librdkafka-dev libwebsockets-dev libyajl-dev
          libssl-dev libev-dev libwebsockets-evlib-ev libcmocka-dev kcat default-jre-headless
          maven python3-pytest python3-yaml chromium nodejs npm openssl)
# The container image test is opt-in (PB_TEST_IMAGE=1, ~2 minutes): it needs
# podman and debootstrap (no registry is reachable, so the base image is made
# locally by scripts/base-image.sh).
if [[ "${PB_TEST_IMAGE:-}" == 1 ]]; then
    PACKAGES+=(podman debootstrap)
fi

present() {
    local pkg="$1"
    if dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        return 0
    fi
    case "$pkg" in
        default-jre-headless) command -v java >/dev/null 2>&1 && java -version >/dev/null 2>&1 ;;
        python3-pytest) python3 -c 'import pytest' >/dev/null 2>&1 ;;
        python3-yaml) python3 -c 'import yaml' >/dev/null 2>&1 ;;
        maven) command -v mvn >/dev/null 2>&1 ;;
        kcat) command -v kcat >/dev/null 2>&1 ;;
        cmake) command -v cmake >/dev/null 2>&1 ;;
        # node 18+ from anywhere (Debian's nodejs, or NodeSource's, which
        # brings its own npm: Debian's comes as a package of its own).
        nodejs) command -v node >/dev/null 2>&1 ;;
        npm) command -v npm >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    present "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    if [[ "$(id -u)" != 0 ]]; then
        echo "missing packages (${missing[*]}) and not root: install them and re-run" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---- (b) Kafka jars (cached in tests/kafka/lib) ----------------------------
if [[ ! -f tests/kafka/lib/kafka_2.13-3.9.1.jar ]]; then
    log "fetching the Kafka broker jars with Maven"
    (cd tests/kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib)
fi

# ---- (b2) the browser tests' driver (puppeteer-core, pinned by the lockfile;
# Chromium is Debian's, so puppeteer downloads no browser) ------------------
if [[ ! -d tests/browser/node_modules/puppeteer-core ]]; then
    log "installing puppeteer-core for the browser tests (npm ci)"
    (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# ---- (c) build -------------------------------------------------------------
if ((ASAN)); then
    BUILD=build-asan
    CMAKE_ARGS=(-DPB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export PB_ASAN=1
else
    BUILD=build
    CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release)
fi
log "building into $BUILD/"
cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}"
cmake --build "$BUILD" -j "$(nproc)"

# ---- (d) unit tests, (e) integration tests ---------------------------------
status=0
log "unit tests (ctest)"
(cd "$BUILD" && ctest --output-on-failure) || status=1

log "integration tests (pytest, real Kafka broker)"
PB_BINARY="$ROOT/$BUILD/pushbridge" python3 -m pytest -q -p no:cacheprovider \
    tests/integration "$@" || status=1

if ((status)); then
    log "FAILED"
else
    log "all tests passed"
fi
exit "$status"
