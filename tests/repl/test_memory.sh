#!/bin/sh
# SLUICE_MEMORY limits what each worker's Lua state may hold: past it an
# allocation in a callback or task fails with Lua's memory error, which
# names the worker and the limit; the stage (or task) fails with it, the
# rest of the pipeline stops and the process exits normally.
#   usage: sh tests/repl/test_memory.sh build/sluice
# Prints "ok NAME" or "FAIL NAME" per check, then "N passed, M failed".
BIN=${1:?usage: sh tests/repl/test_memory.sh path/to/sluice}

NAME_TMP=sluice-memory
. "$(dirname "$0")/proc.inc"

# a reduce that keeps every event: it never fits in 32 MiB
ACC='sluice.flow.from_enumerable(sluice.range(1, 100000000), {stages = 1})
  :reduce(function() return {} end, function(x, acc) acc[#acc + 1] = ("x"):rep(100) .. x; return acc end)
  :to_list()'

SLUICE_MEMORY=32M; export SLUICE_MEMORY
run -w 1 -e "$ACC"
err=$(printf '%s\n' "$err" | head -n 1)
check "a runaway accumulator in a flow" 1 "" \
  "sluice: sluice.flow: flow 1 layer 1 stage 1: stage 1 on worker 1 (handle_demand): not enough memory (worker 1 limit 32 MiB)"

run -w 2 -e "local ok, e = pcall(function() return $ACC end)
print(ok, (e:gsub('stage %d+ on worker %d+', 'stage S on worker W'):gsub('worker %d+ limit', 'worker W limit')))
print(sluice.flow.from_enumerable({1, 2, 3}):map(function(x) return x * 2 end):to_list()[3])"
check "the error is caught, and the workers go on" 0 "false	sluice.flow: flow 1 layer 1 stage 1: stage S on worker W (handle_demand): not enough memory (worker W limit 32 MiB)
6" ""

SLUICE_MEMORY=16m
run -w 1 -e "local t = sluice.task(function() local a = {} while true do a[#a + 1] = ('y'):rep(64) .. #a end end)
print(pcall(t.await, t))
local p = sluice.start({type = 'producer', handle_demand = function(n, s) local a = {} while true do a[#a + 1] = {} end end}, 0)
sluice.start({type = 'consumer', handle_events = function(e, f, s) return {}, s end}, nil, {subscribe_to = {p}})
print(p:await()[2])
print(sluice.task(function() return 6 * 7 end):await())"
check "a task and a stage past the limit" 0 "false	not enough memory (worker 1 limit 16 MiB)
stage 2 on worker 1 (handle_demand): not enough memory (worker 1 limit 16 MiB)
42" ""

SLUICE_MEMORY=1536K
run -w 1 -e "local t = sluice.task(function() return ('z'):rep(4 * 1024 * 1024) end)
print(pcall(t.await, t))"
check "a limit in KiB" 0 "false	not enough memory (worker 1 limit 1536 KiB)" ""

# within the limit nothing changes
SLUICE_MEMORY=64M
run -w 2 -e "print(#sluice.flow.from_enumerable(sluice.range(1, 100000)):map(function(x) return x .. '' end):to_list())"
check "a flow within the limit" 0 "100000" ""

for bad in 12x -5 M 99999999999999999999G; do
  SLUICE_MEMORY=$bad
  run -e "print(1)"
  check "SLUICE_MEMORY=$bad is refused" 1 "" \
    "sluice: SLUICE_MEMORY must be a number of bytes, with an optional K, M or G, got '$bad'"
done

SLUICE_MEMORY=
run -w 1 -e "print(#sluice.task(function() return ('z'):rep(8 * 1024 * 1024) end):await())"
check "empty: no limit" 0 "8388608" ""
unset SLUICE_MEMORY

finish
