#!/bin/sh
# Runs examples/gs_rate_limiter.lua with 1, 2 and 4 workers and compares
# its output with the exact expected text.
#   usage: sh tests/examples/gs_rate_limiter.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_rate_limiter.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='batch 1: 0 1 2 3 4
batch 2: 5 6 7 8 9
batch 3: 10 11 12 13 14
batch 4: 15 16 17 18 19
limiter stopped: normal'
for w in 1 2 4; do
  check "gs_rate_limiter -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_rate_limiter.lua
done
check "gs_rate_limiter 2" 'batch 1: 0 1 2 3 4
batch 2: 5 6 7 8 9
limiter stopped: normal' timeout 60 "$BIN" examples/gs_rate_limiter.lua 2
finish
