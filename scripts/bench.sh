#!/bin/sh
# Benchmark suite: `make bench` (QUICK=1 for a small corpus and 1 M events).
#   scripts/bench.sh [BUILD_DIR]
# Builds the two C helpers (corpus generator, timer) into BUILD_DIR/bench,
# then runs scripts/bench/run.lua, which generates the corpora into
# bench-data/ (ignored by git) on first use and prints the results table.
# Environment: QUICK, RUNS, SEED, ONLY — see scripts/bench/run.lua.
set -eu
BUILD=${1:-build}
cd "$(dirname "$0")/.."

if [ ! -x "$BUILD/sluice" ]; then
  echo "bench: $BUILD/sluice is missing; run make first" >&2
  exit 1
fi
mkdir -p "$BUILD/bench" bench-data
for tool in gencorpus benchrun; do
  if [ ! -x "$BUILD/bench/$tool" ] || [ "scripts/bench/$tool.c" -nt "$BUILD/bench/$tool" ]; then
    ${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -o "$BUILD/bench/$tool" "scripts/bench/$tool.c"
  fi
done
exec "${LUA:-lua5.4}" scripts/bench/run.lua "$BUILD"
