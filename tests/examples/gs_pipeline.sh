#!/bin/sh
# Runs examples/gs_pipeline.lua with 1, 2 and 4 workers and compares its
# output with the exact expected text.
#   usage: sh tests/examples/gs_pipeline.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_pipeline.sh path/to/sluice}
passed=0; failed=0
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
check() { # $1 = name, $2 = expected, then the command
  name=$1; want=$2; shift 2
  got=$("$@" 2>&1)
  if [ "$got" = "$want" ]; then echo "ok $name"; passed=$((passed + 1))
  else echo "FAIL $name"; printf '%s\n' "--- expected" "$want" "--- got" "$got" | sed 's/^/    /'; failed=$((failed + 1)); fi
}
for w in 1 2 4; do
  check "gs_pipeline -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_pipeline.lua
done
check "gs_pipeline 3" '0
2
4
C stopped: normal
A alive: false, B alive: false' timeout 60 "$BIN" examples/gs_pipeline.lua 3
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
