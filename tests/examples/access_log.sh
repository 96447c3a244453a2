#!/bin/sh
# Runs examples/access_log.lua (top pages per minute over fixed windows with lateness) with 1, 2 and 4
# workers, and once with other arguments, and compares its output with the
# exact expected text.
#   usage: sh tests/examples/access_log.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/access_log.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='12:00-12:01  /search   170  /shop     133  /blog      85
12:01-12:02  /about    271  /login    139  /blog     111
12:02-12:03  /login    163  /pricing  157  /checkout 141
12:03-12:04  /cart     235  /checkout 189  /search    80
12:04-12:05  /shop     175  /blog     171  /pricing  111
12:05-12:06  /docs     201  /search   162  /about    129
4764 records, 4751 counted, 13 dropped as late'
for w in 1 2 4; do
  check "access_log -w $w" "$expected" timeout 60 "$BIN" -w $w examples/access_log.lua
done
check "access_log 3 1 -w 2" '12:00-12:01  /docs     189  /about    137  /blog      92
12:01-12:02  /about    182  /         172  /checkout 137
12:02-12:03  /checkout 157  /about    156  /          90
2397 records, 2386 counted, 11 dropped as late' timeout 60 "$BIN" -w 2 examples/access_log.lua 3 1
finish
