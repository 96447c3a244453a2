#!/bin/sh
# Runs the conservation stress test (tests/stress/stress.lua) over seeds
# FIRST .. FIRST+COUNT-1, split into four processes run one after another
# with -w 1, 2, 3 and 4 workers; each failing seed prints the command that
# replays it. Prints the time taken and ends with "N passed, M failed".
#   scripts/stress.sh BUILD [FIRST [COUNT]]
BUILD=${1:-build}
FIRST=${2:-1}
COUNT=${3:-500}
BIN=$BUILD/sluice
passed=0; failed=0
start=$(date +%s)
log=$(mktemp); trap 'rm -f "$log"' EXIT
per=$(( (COUNT + 3) / 4 ))
for w in 1 2 3 4; do
  a=$(( FIRST + (w - 1) * per )); b=$(( a + per - 1 ))
  [ $b -ge $(( FIRST + COUNT )) ] && b=$(( FIRST + COUNT - 1 ))
  [ $a -gt $b ] && continue
  timeout 3600 "$BIN" -w "$w" tests/stress/stress.lua "$a" "$b" >"$log" 2>&1; rc=$?
  grep -E '^FAIL|^  replay' "$log"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "stress -w $w seeds $a..$b: exit $rc, no summary"; tail -n 20 "$log"
    failed=$((failed + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed}
  echo "stress -w $w seeds $a..$b: $line"
  passed=$((passed + p)); failed=$((failed + f))
done
echo "stress: seeds $FIRST..$((FIRST + COUNT - 1)) in $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
