#!/usr/bin/env bash
# Builds pushbridge (Release) and runs it with its embedded defaults: an
# in-process Kafka, auth.mode none, any origin. Extra arguments are passed on;
# PUSHBRIDGE_* environment variables still apply.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DPB_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
exec build-release/pushbridge --dev "$@"
