#!/usr/bin/env bash
# The one test command: installs what is missing (Debian 12, as root), fetches
# the Kafka jars, builds, runs the unit tests (ctest) and the integration
# tests (pytest against the real binary and a real Kafka broker).
#
#   tests/run.sh                 Release build in build/
#   tests/run.sh --asan          Debug + ASan/UBSan build in build-asan/
#   tests/run.sh --tsan          Debug + ThreadSanitizer build in build-tsan/: the
#                                unit tests, and the integration tests that
#                                cross threads most, on two workers
#   tests/run.sh [--asan] ARGS   extra ARGS go to pytest (e.g. -k fanout -x)
#   PB_TEST_IMAGE=1 tests/run.sh also builds the container image (podman)
#
# Exits non-zero if any step or any test failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ASAN=0
TSAN=0
if [[ "${1:-}" == "--asan" ]]; then
    ASAN=1
    shift
elif [[ "${1:-}" == "--tsan" ]]; then
    TSAN=1
    shift
fi

log() { printf '\n==> %s\n' "$*"; }

# ---- (a) dependencies ------------------------------------------------------
# A package counts as present when dpkg says so, or (for the tools that may
# come from elsewhere, e.g. a JDK or a pip-installed pytest) when the tool
# itself answers.
PACKAGES=(build-essential cmake pkg-config librdkafka-dev libwebsockets-dev libyajl-dev
          libssl-dev libev-dev libwebsockets-evlib-ev libcmocka-dev kcat default-jre-headless
          maven python3-pytest python3-yaml python3-pip chromium nodejs npm openssl)
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
        # test_60_helm.py takes the Kubernetes schemas from a PyPI package
        # (scripts/helm-tools.sh); helm and kubeconform are built with Go.
        python3-pip) python3 -m pip --version >/dev/null 2>&1 ;;
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

# ---- (a2) the CloudEvents Python SDK: test_61 makes its CloudEvents with the
# real producers' library (PyPI only; Debian does not package it) ------------
if ! python3 -c 'import cloudevents.v1.kafka' >/dev/null 2>&1; then
    log "installing the CloudEvents Python SDK (pip)"
    python3 -m pip install -q --break-system-packages 'cloudevents>=1.6' 2>/dev/null ||
        python3 -m pip install -q 'cloudevents>=1.6' ||
        echo "cannot install the CloudEvents SDK: test_61's CloudEvents tests will say skipped" >&2
fi

# ---- (b) Kafka jars (cached in tests/kafka/lib) ----------------------------
if [[ ! -f tests/kafka/lib/kafka_2.13-3.9.1.jar ]]; then
    log "fetching the Kafka broker jars with Maven"
    (cd tests/kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib)
fi

# ---- (b2) the browser tests' tools (puppeteer-core, and esbuild for the npm
# package's bundling test; pinned by the lockfile; Chromium is Debian's, so
# puppeteer downloads no browser) --------------------------------------------
if [[ ! -d tests/browser/node_modules/puppeteer-core || ! -x tests/browser/node_modules/.bin/esbuild ]]; then
    log "installing puppeteer-core and esbuild for the browser tests (npm ci)"
    (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# ---- (c) build -------------------------------------------------------------
if ((TSAN)); then
    BUILD=build-tsan
    CMAKE_ARGS=(-DPB_TSAN=ON -DCMAKE_BUILD_TYPE=Debug)
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
elif ((ASAN)); then
    BUILD=build-asan
    CMAKE_ARGS=(-DPB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export PB_ASAN=1
    # The sanitizer run covers the single loop; the plain run two workers.
    export PB_TEST_WORKERS="${PB_TEST_WORKERS:-1}"
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

if ((TSAN)); then
    # Under ThreadSanitizer: the tests whose bridges run two workers and
    # cross threads the most (fan-out, slow clients, SIGTERM, token lifetime,
    # resume, SSE, and the workers' own). librdkafka is Debian's,
    # uninstrumented: tests/tsan/ says how its threads are made visible and
    # what is suppressed in it.
    log "integration tests under ThreadSanitizer (workers: 2)"
    TSAN_OPTIONS="suppressions=$ROOT/tests/tsan/suppressions.txt halt_on_error=0" \
    PB_ASAN=1 PB_TEST_WORKERS=2 PB_BINARY="$ROOT/$BUILD/pushbridge" python3 -m pytest -q \
        -p no:cacheprovider "$@" tests/integration/test_03_fanout.py \
        tests/integration/test_09_slow_client.py tests/integration/test_13_sigterm.py \
        tests/integration/test_37_token_lifetime.py tests/integration/test_44_resume.py \
        tests/integration/test_48_sse.py tests/integration/test_55_workers.py || status=1
    if ((status)); then log "FAILED"; else log "all tests passed"; fi
    exit "$status"
fi

log "integration tests (pytest, real Kafka broker)"
PB_BINARY="$ROOT/$BUILD/pushbridge" python3 -m pytest -q -p no:cacheprovider \
    tests/integration "$@" || status=1

if ((status)); then
    log "FAILED"
else
    log "all tests passed"
fi
exit "$status"
