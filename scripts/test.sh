#!/bin/sh
# Runs every test of the project and prints one last line "N passed, M failed".
#   C unit tests:    BUILD/tests/test_*   (each ends with "N passed, M failed")
#   luaunit suites:  tests/lua/test_*.lua run by BUILD/sluice -w N for each N
#                    in TEST_WORKERS (default "1 2 4")
#   shell tests:     tests/repl/*.sh, tests/examples/*.sh, tests/module/*.sh,
#                    tests/redis/*.sh (REDIS_N: entries of the scale-out checks)
#                    (each ends with "N passed, M failed")
#   stress:          scripts/stress.sh, seeds 1..STRESS_SHORT (default 20)
# A program that crashes or prints no summary counts as one failure.
BUILD=${1:-build}
BIN=$BUILD/sluice
passed=0; failed=0
log=$(mktemp); trap 'rm -f "$log"' EXIT

add() { # $1 = name, output in $log, $2 = exit status
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    ran=$(grep -E '^Ran [0-9]+ tests' "$log" | tail -n 1)
    if [ -n "$ran" ]; then
      n=$(echo "$ran" | sed -E 's/^Ran ([0-9]+) tests.*/\1/')
      s=$(echo "$ran" | sed -nE 's/.* ([0-9]+) success.*/\1/p'); s=${s:-0}
      line="$s passed, $((n - s)) failed"
    fi
  fi
  if [ -z "$line" ]; then
    echo "FAIL $1 (exit $2, no summary)"; sed 's/^/    /' "$log" | tail -n 30
    failed=$((failed + 1)); return
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed}
  if [ "$2" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" != 0 ]; then echo "FAIL $1: $line"; sed 's/^/    /' "$log" | grep -vE '^    ok ' | tail -n 40
  else echo "ok   $1: $line"; fi
}

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  timeout 120 "$t" >"$log" 2>&1; add "$(basename "$t")" $?
done
# every suite runs once per worker count in TEST_WORKERS (default 1 2 4):
# what a suite asserts must hold however many workers there are
for t in tests/lua/test_*.lua; do
  [ -f "$t" ] || continue
  for w in ${TEST_WORKERS:-1 2 4}; do
    timeout 300 "$BIN" -w "$w" "$t" -o text >"$log" 2>&1; add "$t -w $w" $?
  done
done
for t in tests/repl/*.sh tests/examples/*.sh tests/module/*.sh tests/redis/*.sh; do
  [ -f "$t" ] || continue
  timeout 300 sh "$t" "$BIN" >"$log" 2>&1; add "$t" $?
done
# the short conservation stress run (make stress runs the long one)
timeout 600 scripts/stress.sh "$BUILD" 1 "${STRESS_SHORT:-20}" >"$log" 2>&1; add "stress seeds 1..${STRESS_SHORT:-20}" $?
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
