#!/bin/sh
# The Lua module BUILD/sluice.so in the stock lua5.4 interpreter: the
# luaunit suites through `lua5.4 -l sluice` (2 workers), a Flow on two
# workers, the same API as the binary's global, what the module leaves of
# the host's state, C modules on the main state and on a worker, and a
# clean, quick end when the host closes its state; a C program that embeds
# Lua and loads the module (tests/module/host.c, BUILD/tests/module_host).
#   usage: sh tests/module/module.sh path/to/sluice   (the module next to it)
# Sanitizer builds (BUILD named build-address-..., build-thread) load the
# sanitizer runtime into lua5.4 with LD_PRELOAD, since the interpreter is
# not built with it.
BIN=${1:?usage: sh tests/module/module.sh path/to/sluice}
BUILD=$(dirname "$BIN")
. tests/examples/check.inc
LUA=${LUA:-lua5.4}
case $BUILD in
  *address*) PRELOAD=$(cc -print-file-name=libasan.so) ;;
  *thread*) PRELOAD=$(cc -print-file-name=libtsan.so) ;;
  *) PRELOAD= ;;
esac
export LUA_CPATH="$BUILD/?.so;;" LUA_PATH=";;" SLUICE_WORKERS=2
lua() { LD_PRELOAD=$PRELOAD timeout 60 "$LUA" "$@"; }

# ---- the luaunit suites, through the stock interpreter ----------------------
# Left out: test_exit.lua and the tests below start the sluice binary as
# a child process (they find it at arg's lowest index, lua5.4 here) or
# read its build directory; they are about the binary.
EXCLUDE="-x test_lines_of_stdin_as_a_pipe -x TestWarn -x TestCModules
         -x test_run_finds_the_binary_behind_options -x test_overflow_warning"
# Under ThreadSanitizer the processes a test starts (sh) inherit the
# LD_PRELOAD of the TSan runtime, which crashes in a program not built
# with it: the one test that starts a shell is left out there.
case $PRELOAD in *tsan*) EXCLUDE="$EXCLUDE -x test_lines_of_a_fifo" ;; esac
out=$(mktemp); trap 'rm -f "$out"' EXIT
for t in tests/lua/test_*.lua; do
  [ "$t" = tests/lua/test_exit.lua ] && continue
  # test_redis.lua starts a redis-server through sh; under a sanitizer's
  # LD_PRELOAD the shell (not built with it) fails, so the suite would only
  # skip. The sanitizer runs take it through the binary (scripts/test.sh).
  [ -n "$PRELOAD" ] && [ "$t" = tests/lua/test_redis.lua ] && continue
  # shellcheck disable=SC2086
  lua -l sluice "$t" -o text $EXCLUDE >"$out" 2>&1
  rc=$?
  ran=$(grep -E '^Ran [0-9]+ tests' "$out" | tail -n 1)
  n=$(echo "$ran" | sed -nE 's/^Ran ([0-9]+) tests.*/\1/p'); n=${n:-0}
  s=$(echo "$ran" | sed -nE 's/.* ([0-9]+) successes.*/\1/p'); s=${s:-0}
  if [ "$rc" = 0 ] && [ "$n" -gt 0 ] && [ "$s" = "$n" ]; then
    echo "ok lua5.4 -l sluice $t: $s tests"; passed=$((passed + s))
  else
    echo "FAIL lua5.4 -l sluice $t (exit $rc): $ran"; sed 's/^/    /' "$out" | tail -n 30
    failed=$((failed + 1 + n - s)); passed=$((passed + s))
  fi
done

# ---- a Flow on two workers ----------------------------------------------------
check "flow on two workers" "workers	2
a=2 and=2 brown=1 dog=3 fox=2 jumps=1 lazy=1 over=3 quick=1 sleeps=1 the=3
the layer ran on workers	1 2" lua -l sluice tests/module/flow_two_workers.lua

# ---- the tour's scripts print what they print in the binary -------------------
secs() { "$@" 2>&1 | sed -E 's/ in [0-9.]+ seconds/ in T seconds/'; }   # luaunit's timing
for f in examples/tour_*.lua; do
  check "lua5.4 -l sluice $f" "$(secs "$BIN" "$f")" secs lua -l sluice "$f"
done

# ---- the same API as the binary -------------------------------------------------
api='local function keys(t) local k = {} for n in pairs(t) do k[#k + 1] = n end table.sort(k) return table.concat(k, " ") end
print(keys(sluice)); print(keys(sluice.flow)); print(keys(sluice.window)); print(keys(sluice.dispatcher))'
check "the module table is the binary's sluice" "$("$BIN" -e "$api" 2>&1)" lua -l sluice -e "$api"

# ---- the host's state ------------------------------------------------------------
check "require: no global, one table, the host's collector mode kept" "nil	true	true	incremental	2" \
  lua -e 'collectgarbage("incremental") local s = require("sluice"); print(rawget(_G, "sluice"), require("sluice") == s,
          package.loaded.sluice == s, collectgarbage("incremental"), s.workers())'
check "the stock print becomes the line-atomic one, printing the same" "false	1	nil	x	{}" \
  lua -e 'local p = print; require("sluice"); print(print == p, 1, nil, "x", setmetatable({}, {__tostring = function() return "{}" end}))'
check "a host's own print stays" "mine true" \
  lua -e 'local function mine(...) io.write("mine ", tostring(...), "\n") end; print = mine
          require("sluice"); print(print == mine)'
check "required inside a coroutine" "7	12" \
  lua -e 'local s = coroutine.wrap(function() return require("sluice") end)()
          print(s.task(function(a, b) return a + b, a * b end, 3, 4):await())'
check "SLUICE_WORKERS is checked" "lua5.4: sluice: SLUICE_WORKERS must be a number from 1 to 1024, got '0'" \
  sh -c "SLUICE_WORKERS=0 LD_PRELOAD='$PRELOAD' $LUA -l sluice -e 'print(1)' 2>&1 | head -n 1"
check "C modules on the main state and on a worker" "5	42" \
  lua -l sluice -e "package.cpath = '$BUILD/tests/?.so;' .. package.cpath
    print(require('probe').add(2, 3), sluice.task(function(cpath)
      package.cpath = cpath; return require('probe').add(40, 2) end, package.cpath):await())"

# ---- a program of its own that embeds Lua (tests/module/host.c) -------------------
check "a host program: one state per process" "A: task 42
A: 4 events through a partition
B: error: sluice: another Lua state of this process already uses sluice (one state per process requires it; its workers serve that state)
B: error: sluice: the Lua state that used sluice in this process was closed; sluice opens once per process" \
  timeout 60 "$BUILD/tests/module_host" "$BUILD"

# ---- the end -----------------------------------------------------------------------
# at the end of the script lua5.4 closes its state: the stages end in
# order (the consumer's terminate runs) and the workers stop, at once
start=$(date +%s)
check "stages end when the host closes its state" "script done
consumer ended:	\"normal\"	true" lua -l sluice tests/module/exit.lua
check "os.exit(0, true) closes the state too" "script done
consumer ended:	\"normal\"	true" \
  lua -l sluice -e 'dofile("tests/module/exit.lua") io.stdout:flush() os.exit(0, true)'
check "a worker in an endless loop is interrupted at close" "end" \
  lua -l sluice -e 'sluice.task(function() while true do end end); sluice.sleep(10); print("end")'
took=$(( $(date +%s) - start ))
check "the ends took under 5 s" "yes" sh -c "[ $took -lt 5 ] && echo yes || echo 'no: $took s'"
finish
