#!/bin/sh
# The REPL and the script runner reading stdin that is not a terminal (a
# pipe or a file), as lua5.4 does: the REPL shows the prompt and each line
# read, prints the results and exits with 0 at the end of the input; with
# no -i, stdin is run as one script. Every run has 10 s to finish.
#   usage: sh tests/repl/test_stdin.sh build/sluice
# Prints "ok NAME" or "FAIL NAME" per check, then "N passed, M failed".
BIN=${1:?usage: sh tests/repl/test_stdin.sh path/to/sluice}

NAME_TMP=sluice-stdin
. "$(dirname "$0")/proc.inc"



# the REPL's banner: the version line, then where to read on
V="$("$BIN" -v)
help() lists the sluice functions; the tour is README.md, the reference lua/README.md"

run_in 'print(1)
' -i
check "-i, pipe: output, then exit 0 at the end" 0 "$V
sluice> print(1)
1
sluice> " ""

printf 'x = 6\n=x * 7\n{x, "a"}\n' >"$TMPD/in.lua"
run_file "$TMPD/in.lua" -i
check "-i, file: expressions printed" 0 "$V
sluice> x = 6
sluice> =x * 7
42
sluice> {x, \"a\"}
{6, \"a\"}
sluice> " ""

run_in 'print(1)' -i
check "-i, pipe: a last line without newline still runs" 0 "$V
sluice> print(1)
1
sluice> " ""

run_file /dev/null -i
check "-i, empty input" 0 "$V
sluice> " ""

run_in 'error("boom")
print(2)
' -i
check "-i, pipe: an error is reported and the input goes on" 0 "$V
sluice> error(\"boom\")
sluice> print(2)
2
sluice> " "sluice: stdin:1: boom
stack traceback:
	[C]: in function 'error'
	stdin:1: in main chunk
	[C]: in ?"

run_in 'function f(a)
return a * 3
end
=f(4)
x =
' -i
check "-i, pipe: continuation lines; an unfinished chunk at the end" 0 "$V
sluice> function f(a)
>> return a * 3
>> end
sluice> =f(4)
12
sluice> x =
>> sluice> " "sluice: stdin:1: unexpected symbol near <eof>"

[ ! -e "$HOME/.sluice_history" ]; rc=$?; out=; err=
check "-i, pipe: piped lines are not added to the history file" 0 "" ""

printf 'print(1)\nprint(select("#", ...))\n' >"$TMPD/s.lua"
run_file "$TMPD/s.lua"
check "no arguments, stdin a file: run as a script" 0 "1
0" ""

run_in 'print(1)
'
check "no arguments, stdin a pipe: run as a script" 0 "1" ""

run_in 'print(1, ...)
' - a b
check "-: stdin run as the script with its arguments" 0 "1	a	b" ""

run_in 'error("boom")
'
check "no arguments, stdin a pipe: an error exits with 1" 1 "" "sluice: stdin:1: boom
stack traceback:
	[C]: in function 'error'
	stdin:1: in main chunk
	[C]: in ?"

finish
