#!/bin/sh
# The process always exits, whatever its workers are doing: at the end of
# a script, after a script error, after Ctrl-C (SIGINT) and at the end of
# the REPL's input. A worker running an endless Lua loop is interrupted;
# one stuck in a C call is left behind after 1 s with a message. Every run
# has 10 s to finish; status, stdout and stderr are compared exactly.
#   usage: sh tests/repl/test_exit.sh build/sluice
# Prints "ok NAME" or "FAIL NAME" per check, then "N passed, M failed".
BIN=${1:?usage: sh tests/repl/test_exit.sh path/to/sluice}

NAME_TMP=sluice-exit
. "$(dirname "$0")/proc.inc"


# run_int INPUT ARGS...: starts the binary in the background with INPUT on
# stdin, waits until its stdout shows a line "ready", sends SIGINT, and
# waits up to 10 s for it to end (status 124 and a KILL if it does not).
run_int() {
  printf '%s' "$1" >"$TMPD/in"; shift
  "$BIN" "$@" <"$TMPD/in" >"$TMPD/out" 2>"$TMPD/err" &
  pid=$!
  tries=100
  until grep -q '^ready$' "$TMPD/out" 2>/dev/null || [ $tries -le 0 ]; do
    tries=$((tries - 1)); sleep 0.1
  done
  sleep 0.5     # into the blocking call that follows "ready"
  kill -INT $pid 2>/dev/null
  tries=100
  while kill -0 $pid 2>/dev/null && [ $tries -gt 0 ]; do
    tries=$((tries - 1)); sleep 0.1
  done
  if kill -0 $pid 2>/dev/null; then
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null; rc=124
  else
    wait $pid; rc=$?
  fi
  out=$(cat "$TMPD/out"); err=$(cat "$TMPD/err")
}

LOOP='sluice.task(function() while true do end end)'

# ---- script end ----------------------------------------------------------------

run -w 2 -e "$LOOP; sluice.sleep(100); print('end')"
check "script end with a task in an endless loop" 0 "end" ""

run -w 1 -e "sluice.task(function() while true do pcall(function() while true do end end) end end); sluice.sleep(100); print('end')"
check "script end with a task that catches the interruption" 0 "end" ""

run -w 2 -e "local P = sluice.start({type = 'producer', handle_demand = function(n, s) while true do end end}, 0)
sluice.start({type = 'consumer', handle_events = function(e, f, s) return {}, s end}, nil, {subscribe_to = {P}})
sluice.sleep(100); print('end')"
check "script end with a stage callback in an endless loop" 0 "end" \
  "sluice: at exit, stage 1 on worker 1 was interrupted in handle_demand (it had not returned)"

run -w 1 -e "sluice.task(function() sluice.sleep(600000) end); sluice.sleep(100); print('end')"
check "script end with a task sleeping for ten minutes" 0 "end" ""

# A worker blocked in C (opening a FIFO nobody writes to) cannot be
# interrupted: the process leaves without it after 1 s and says so.
mkfifo "$TMPD/fifo"
run -w 1 -e "sluice.task(function() io.open('$TMPD/fifo') end); sluice.sleep(100); print('end')"
check "script end with a worker stuck in a C call" 0 "end" \
  "sluice: worker 1 did not stop within 1000 ms (busy in a C call?); exiting without waiting for it"

# ---- script error --------------------------------------------------------------

run -w 2 -e "$LOOP; error('boom')"
check "script error with a task in an endless loop" 1 "" "sluice: (command line):1: boom
stack traceback:
	[C]: in function 'error'
	(command line):1: in main chunk
	[C]: in ?"

printf '%s\n' "$LOOP" "sluice.sleep(50)" "local t = nil" "t.x = 1" >"$TMPD/err.lua"
run -w 2 "$TMPD/err.lua"
check "script file error with a task in an endless loop" 1 "" "sluice: $TMPD/err.lua:4: attempt to index a nil value (local 't')
stack traceback:
	$TMPD/err.lua:4: in main chunk
	[C]: in ?"

# ---- SIGINT ----------------------------------------------------------------------

run_int "" -w 2 -e "$LOOP; print('ready'); sluice.sleep(60000)"
check "SIGINT in a script with a task in an endless loop" 1 "ready" "sluice: (command line):1: interrupted
stack traceback:
	[C]: in function 'sluice.sleep'
	(command line):1: in main chunk
	[C]: in ?"

run_int "" -w 2 -e "T = $LOOP; print('ready'); T:await()"
check "SIGINT while awaiting a task in an endless loop" 1 "ready" "sluice: (command line):1: interrupted
stack traceback:
	[C]: in method 'await'
	(command line):1: in main chunk
	[C]: in ?"

# the REPL's banner: the version line, then where to read on
V="$("$BIN" -v)
help() lists the sluice functions; the tour is README.md, the reference lua/README.md"
run_int "print('ready')
T = $LOOP; T:await()
print('after')
" -w 2 -i
check "SIGINT in the REPL, then the end of its input" 0 "$V
sluice> print('ready')
ready
sluice> T = $LOOP; T:await()
sluice> print('after')
after
sluice> " "sluice: stdin:1: interrupted
stack traceback:
	[C]: in method 'await'
	stdin:1: in main chunk
	[C]: in ?"

# ---- the REPL's end of input ---------------------------------------------------------

printf '%s\n' "$LOOP" >"$TMPD/loop.lua"
timeout 10 "$BIN" -w 2 -i <"$TMPD/loop.lua" >"$TMPD/out" 2>"$TMPD/err"
rc=$?; out=$(cat "$TMPD/out"); err=$(cat "$TMPD/err")
check "end of the REPL's input with a task in an endless loop" 0 "$V
sluice> $LOOP
<task 1>
sluice> " ""

finish
