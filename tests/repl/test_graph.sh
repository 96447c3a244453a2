#!/bin/sh
# sluice --graph FILE: the live topology as Graphviz DOT, written when the
# script ends (the last flow's, taken when it started, when nothing is
# live then), compared exactly; FILE's .svg through `dot` when it is on
# the PATH (a stand-in dot here: the test needs no Graphviz); errors.
#   usage: sh tests/repl/test_graph.sh build/sluice
BIN=${1:?usage: sh tests/repl/test_graph.sh path/to/sluice}
NAME_TMP=sluice-graph
. "$(dirname "$0")/proc.inc"
# no Graphviz unless a test puts one on the PATH
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/dot" ] || printf '%s:' "$d"; done)
PATH=${PATH%:}

cat >"$TMPD/live.lua" <<'EOS'
local p = sluice.from_enumerable(sluice.range(1, math.huge), { name = "numbers", demand = "accumulate",
  dispatcher = sluice.dispatcher.partition({ partitions = 2 }) })
local sink = { type = "consumer", handle_events = function(_, _, s) return {}, s end }
sluice.start(sink, nil, { name = "even", subscribe_to = { { p, partition = 1 } } })
sluice.start(sink, nil, { name = "odd", subscribe_to = { { p, partition = 2 } } })
repeat sluice.sleep(5) until p:stats().consumers == 2
print("started")
EOS

run -w 1 --graph "$TMPD/live.dot" "$TMPD/live.lua"
check "--graph runs the script" 0 "started" ""
out=$(cat "$TMPD/live.dot")
check "the stages live at the end, with their subscriptions" 0 'digraph sluice {
  rankdir=LR;
  node [shape=box];
  n1 [label="numbers\nproducer, worker 1"];
  n2 [label="even\nconsumer, worker 1"];
  n3 [label="odd\nconsumer, worker 1"];
  n1 -> n2 [label="partition 1"];
  n1 -> n3 [label="partition 2"];
}' ""
[ -e "$TMPD/live.svg" ]; rc=$?; out=; err=
check "no dot on the PATH: no SVG, no message" 1 "" ""

cat >"$TMPD/flow.lua" <<'EOS'
local out = sluice.flow.from_enumerable({ 1, 2, 3 }, { stages = 1 }):map(function(x) return x * 2 end):to_list()
print(#out)
EOS
run -w 1 --graph "$TMPD/flow.dot" "$TMPD/flow.lua"
out="$out
$(cat "$TMPD/flow.dot")"
check "nothing live at the end: the last flow as it started" 0 '3
digraph sluice {
  rankdir=LR;
  node [shape=box];
  n1 [label="flow 1 source 1\nproducer, worker 1"];
  n2 [label="flow 1 layer 1 stage 1\nproducer_consumer, worker 1"];
  n3 [label="flow 1 collector\nconsumer, main thread"];
  n1 -> n2 [label="demand"];
  n2 -> n3 [label="demand"];
}' ""

# a stand-in dot: records its arguments and writes the -o file
mkdir -p "$TMPD/bin"
cat >"$TMPD/bin/dot" <<'EOS'
#!/bin/sh
echo "$@" >"$DOT_ARGS"
while [ $# -gt 0 ]; do [ "$1" = -o ] && echo '<svg/>' >"$2"; shift; done
EOS
chmod +x "$TMPD/bin/dot"
PATH=$TMPD/bin:$PATH DOT_ARGS=$TMPD/args run -w 1 --graph "$TMPD/live.dot" "$TMPD/live.lua"
out="$out $(cat "$TMPD/live.svg") $(cat "$TMPD/args")"
check "with dot on the PATH: FILE.svg (FILE without .dot)" 0 \
  "started <svg/> -Tsvg $TMPD/live.dot -o $TMPD/live.svg" ""

run --graph
out=$(printf '%s\n' "$err" | head -n 1); err=
check "--graph needs a file" 1 "sluice: '--graph' needs argument" ""

run -w 1 --graph /nonexistent/g.dot "$TMPD/flow.lua"
check "an unwritable file: a message and status 1" 1 "3" \
  "sluice: --graph: /nonexistent/g.dot: No such file or directory"

finish
