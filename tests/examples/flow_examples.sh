#!/bin/sh
# Runs the Flow examples (wordcount, topn, join) with 1, 2 and 4 workers and
# several stage counts, and compares their output with the exact expected
# text; the word count is also checked against a count made by plain Lua.
#   usage: sh tests/examples/flow_examples.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/flow_examples.sh path/to/sluice}
. "$(dirname "$0")/check.inc"

wordcount='435 words, 172 distinct
the      79
and      28
gate     13
wheel    13
river    10
water    9
a        8
in       6
that     6
for      5'
topn5='1. gate     13
2. wheel    13
3. river    10
4. water    9
5. that     6'
full='full_outer join, 7 rows
?    104   99
ada  101   30
ada  103   8
bob  102   12
bob  106   5
cy   105   40
dee  -     -'
inner='inner join, 5 rows
ada  101   30
ada  103   8
bob  102   12
bob  106   5
cy   105   40'
left='left_outer join, 6 rows
ada  101   30
ada  103   8
bob  102   12
bob  106   5
cy   105   40
dee  -     -'
right='right_outer join, 6 rows
?    104   99
ada  101   30
ada  103   8
bob  102   12
bob  106   5
cy   105   40'

for w in 1 2 4; do
  check "wordcount -w $w" "$wordcount" timeout 60 "$BIN" -w $w examples/wordcount.lua
  check "topn -w $w" "$topn5" timeout 60 "$BIN" -w $w examples/topn.lua
  check "join -w $w" "$full" timeout 60 "$BIN" -w $w examples/join.lua
done
for s in 1 3 8; do
  check "wordcount stages=$s" "$wordcount" timeout 60 "$BIN" examples/wordcount.lua examples/data/text.txt $s
  check "topn stages=$s" "$topn5" timeout 60 "$BIN" examples/topn.lua examples/data/text.txt 5 $s
done
check "topn n=2" '1. gate     13
2. wheel    13' timeout 60 "$BIN" examples/topn.lua examples/data/text.txt 2
check "join inner" "$inner" timeout 60 "$BIN" examples/join.lua inner 3
check "join left_outer" "$left" timeout 60 "$BIN" examples/join.lua left_outer 2
check "join right_outer" "$right" timeout 60 "$BIN" examples/join.lua right_outer 1
check "join full_outer stages=5" "$full" timeout 60 "$BIN" examples/join.lua full_outer 5

# the word count agrees with a single-state count of the same text
plain=$("$BIN" -e '
local counts, total, distinct = {}, 0, 0
for line in io.lines("examples/data/text.txt") do
  for w in line:lower():gmatch("%a+") do
    if not counts[w] then distinct = distinct + 1 end
    counts[w] = (counts[w] or 0) + 1
    total = total + 1
  end
end
print(("%d words, %d distinct"):format(total, distinct))' 2>&1)
check "wordcount totals = plain count" "$plain" sh -c "\"$BIN\" examples/wordcount.lua | head -n 1"

# a bad join mode: the script fails with the argument named
got=$("$BIN" examples/join.lua outer 2>&1); rc=$?
case $got in
  "sluice: examples/join.lua:"*'sluice.flow.bounded_join: mode must be "inner", "left_outer", "right_outer" or "full_outer", got "outer"'*)
    if [ $rc = 1 ]; then echo "ok join bad mode"; passed=$((passed + 1))
    else echo "FAIL join bad mode (exit $rc)"; failed=$((failed + 1)); fi ;;
  *) echo "FAIL join bad mode"; printf '%s\n' "$got" | sed 's/^/    /'; failed=$((failed + 1)) ;;
esac

finish
