#!/bin/sh
# Runs examples/gs_pipeline.lua with 1, 2 and 4 workers and compares its
# output with the exact expected text.
#   usage: sh tests/examples/gs_pipeline.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_pipeline.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='0
2
4
6
8
10
12
14
16
18
C stopped: normal
A alive: false, B alive: false'
for w in 1 2 4; do
  check "gs_pipeline -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_pipeline.lua
done
check "gs_pipeline 3" '0
2
4
C stopped: normal
A alive: false, B alive: false' timeout 60 "$BIN" examples/gs_pipeline.lua 3
finish
