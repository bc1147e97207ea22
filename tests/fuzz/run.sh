#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for
# SECONDS (default 60) from its committed seed corpus. Exits non-zero on the
# first crash; the crashing input is left in build-fuzz/ for a regression test.
set -euo pipefail
SECONDS_EACH=${1:-60}
cd "$(dirname "$0")/../.."
scripts/deps.sh
if ! command -v clang >/dev/null 2>&1 || ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
    echo "installing clang (libFuzzer)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev
fi
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DPB_FUZZ=ON -DPB_SANITIZE=ON \
    -DPB_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
for target in envelope input login push config http resume oidc; do
    work=build-fuzz/corpus-$target
    mkdir -p "$work"
    echo "fuzz_$target: ${SECONDS_EACH}s"
    (cd build-fuzz && ./fuzz_$target -max_total_time="$SECONDS_EACH" -max_len=65536 \
        -print_final_stats=0 "../$work" "../tests/fuzz/corpus/$target" 2>&1 | tail -3)
done
echo "fuzzing: no crash"
