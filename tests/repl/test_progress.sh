#!/bin/sh
# The progress line: drawn on stderr when it is a terminal (a
# pseudo-terminal from script(1)) for a flow whose source has a known
# size, redrawn with \r and cleared (\r ESC[K) before the script goes on;
# nothing on a pipe; progress = false and SLUICE_PROGRESS=0 turn it off,
# progress = true forces it on a pipe.
#   usage: sh tests/repl/test_progress.sh build/sluice
BIN=${1:?usage: sh tests/repl/test_progress.sh path/to/sluice}
NAME_TMP=sluice-progress
. "$(dirname "$0")/proc.inc"
unset SLUICE_PROGRESS

# about 1 s: ten pauses of 100 ms over a range of 200000
cat >"$TMPD/slow.lua" <<'EOS'
local opt
if arg[1] == "off" then opt = false elseif arg[1] == "on" then opt = true end
sluice.flow.from_enumerable(sluice.range(1, 200000), { stages = 1, progress = opt })
  :map(function(x) if x % 20000 == 0 then sluice.sleep(100) end return x end):run()
print("done")
EOS

# on a pseudo-terminal: stdout and stderr together, \r as R and ESC as E
pty() {
  timeout 20 script -qfc "$*" /dev/null </dev/null | tr '\r\033' 'RE' >"$TMPD/pty"
  rc=$?
}

pty "$BIN" "$TMPD/slow.lua"
lines=$(grep -oE 'Rsluice: +[0-9]+% \| [0-9.]+k? events/s \| [0-9.]+s elapsed \| ETA [0-9.]+sE\[K' "$TMPD/pty" | wc -l)
out=$([ "$lines" -ge 2 ] && echo "at least two lines"); err=
check "a terminal shows the progress line, redrawn ($lines times)" 0 "at least two lines" ""

out=$(grep -c 'E\[KRE\[KdoneR$' "$TMPD/pty")
check "the line is cleared before the script goes on" 0 "1" ""

out=$(sed 's/.*RE\[K//' "$TMPD/pty" | grep -c 'sluice:'); rc=0
check "nothing is drawn after the line is cleared" 0 "0" ""

out=$(grep -oE 'Rsluice: +[0-9]+%' "$TMPD/pty" | sed 's/.* //; s/%//' | sort -n | tail -n 1)
out=$([ "$out" -ge 50 ] && echo "past half"); rc=0
check "the percentage grows past half" 0 "past half" ""

run "$TMPD/slow.lua"
check "nothing on a pipe" 0 "done" ""

pty "$BIN" "$TMPD/slow.lua" off
out=$(cat "$TMPD/pty")
check "progress = false: nothing on a terminal" 0 "doneR" ""

pty env SLUICE_PROGRESS=0 "$BIN" "$TMPD/slow.lua"
out=$(cat "$TMPD/pty")
check "SLUICE_PROGRESS=0: nothing on a terminal" 0 "doneR" ""

# a sluice.stream over a producer of known size: drawn while the loop waits
cat >"$TMPD/stream.lua" <<'EOS'
local p = sluice.from_enumerable({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })
local n = 0
for _ in sluice.stream({ { p, max_demand = 1 } }) do sluice.sleep(100); n = n + 1 end
print("got", n)
EOS
pty "$BIN" "$TMPD/stream.lua"
out=$(grep -cE 'Rsluice: +[0-9]+% \|.*E\[KRE\[Kgot	10R$' "$TMPD/pty")
check "a stream draws the line and clears it at its end" 0 "1" ""

# an error in the flow: the line is cleared before the message
cat >"$TMPD/fail.lua" <<'EOS'
sluice.flow.from_enumerable(sluice.range(1, 200000), { stages = 1 })
  :map(function(x) if x % 20000 == 0 then sluice.sleep(100) end if x == 120000 then error("boom") end return x end)
  :run()
EOS
pty "$BIN" "$TMPD/fail.lua"
out=$(grep -cE 'Rsluice: +[0-9]+% \|.*E\[KRE\[Ksluice: sluice.flow: flow 1 layer 1 stage 1 \(map\):.*boom' "$TMPD/pty")
check "a failing flow clears the line before its error" 0 "1" ""

run "$TMPD/slow.lua" on
err=$(printf '%s' "$err" | tr '\r\033' 'RE' | grep -oE 'Rsluice: +[0-9]+%' | head -n 1 | sed 's/ *[0-9]*%/ N%/')
check "progress = true draws on a pipe too" 0 "done" "Rsluice: N%"

finish
