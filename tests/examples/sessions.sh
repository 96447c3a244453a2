#!/bin/sh
# Runs examples/sessions.lua (session windows per user) with 1, 2 and 4
# workers, and once with other arguments, and compares its output with the
# exact expected text.
#   usage: sh tests/examples/sessions.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/sessions.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='user  sessions  longest (min:s, clicks)
ana         17    41:41  72
ben         24    28:00  56
cho         32    20:22  40
dev         33    23:05  43
eli         31    28:19  52
fay         39    15:20  35
gus         52    19:18  39
hal         35    21:02  39
3000 clicks, 263 sessions'
for w in 1 2 4; do
  check "sessions -w $w" "$expected" timeout 60 "$BIN" -w $w examples/sessions.lua
done
check "sessions 400 5 -w 2" 'user  sessions  longest (min:s, clicks)
ana          5     6:06  14
ben          2    15:08  35
cho          2    18:16  42
dev          4     9:22  22
eli          7     6:26  15
fay         10    10:37  25
gus          4    10:08  16
hal          7    15:34  30
400 clicks, 41 sessions' timeout 60 "$BIN" -w 2 examples/sessions.lua 400 5
finish
