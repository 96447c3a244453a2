#!/bin/sh
# Runs examples/gs_broadcast.lua with 1, 2 and 4 workers and compares its
# output with the exact expected text.
#   usage: sh tests/examples/gs_broadcast.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_broadcast.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='all:            1 2 3 4 5 6 7 8 9 10 11 12
even:           2 4 6 8 10 12
multiples of 3: 3 6 9 12
producer: normal'
for w in 1 2 4; do
  check "gs_broadcast -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_broadcast.lua
done
check "gs_broadcast 100" "all:            $(seq -s ' ' 1 100)
even:           $(seq -s ' ' 2 2 100)
multiples of 3: $(seq -s ' ' 3 3 100)
producer: normal" timeout 60 "$BIN" examples/gs_broadcast.lua 100
finish
