#!/bin/sh
# Runs examples/gs_partition.lua with 1, 2 and 4 workers and compares its
# output with the exact expected text.
#   usage: sh tests/examples/gs_partition.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_partition.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='even: 2^2=4 4^2=16 6^2=36 8^2=64 12^2=144 14^2=196 16^2=256 18^2=324
odd:  1^2=1 3^2=9 7^2=49 9^2=81 11^2=121 13^2=169 17^2=289 19^2=361
stopped: normal normal normal'
for w in 1 2 4; do
  check "gs_partition -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_partition.lua
done
check "gs_partition 6" 'even: 2^2=4 4^2=16 6^2=36
odd:  1^2=1 3^2=9
stopped: normal normal normal' timeout 60 "$BIN" examples/gs_partition.lua 6
finish
