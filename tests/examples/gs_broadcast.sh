#!/bin/sh
# Runs examples/gs_broadcast.lua with 1, 2 and 4 workers and compares its
# output with the exact expected text.
#   usage: sh tests/examples/gs_broadcast.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/gs_broadcast.sh path/to/sluice}
passed=0; failed=0
expected='all:            1 2 3 4 5 6 7 8 9 10 11 12
even:           2 4 6 8 10 12
multiples of 3: 3 6 9 12
producer: normal'
check() { # $1 = name, $2 = expected, then the command
  name=$1; want=$2; shift 2
  got=$("$@" 2>&1)
  if [ "$got" = "$want" ]; then echo "ok $name"; passed=$((passed + 1))
  else echo "FAIL $name"; printf '%s\n' "--- expected" "$want" "--- got" "$got" | sed 's/^/    /'; failed=$((failed + 1)); fi
}
for w in 1 2 4; do
  check "gs_broadcast -w $w" "$expected" timeout 60 "$BIN" -w $w examples/gs_broadcast.lua
done
check "gs_broadcast 100" "all:            $(seq -s ' ' 1 100)
even:           $(seq -s ' ' 2 2 100)
multiples of 3: $(seq -s ' ' 3 3 100)
producer: normal" timeout 60 "$BIN" examples/gs_broadcast.lua 100
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
