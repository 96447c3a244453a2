#!/bin/sh
# Runs examples/moving_average.lua (sliding windows) with 1, 2 and 4
# workers, and once with other arguments, and compares its output with the
# exact expected text.
#   usage: sh tests/examples/moving_average.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/moving_average.sh path/to/sluice}
. "$(dirname "$0")/check.inc"
expected='start   readings  average
 -8.0s         2    20.05
 -6.0s         4    19.85
 -4.0s         6    19.70
 -2.0s         7    19.59
  0.0s         9    19.38
  2.0s         9    19.06
  4.0s         9    18.88
  6.0s         8    18.74
  8.0s        10    18.58
 10.0s        10    18.49
 12.0s        10    18.39
 14.0s         9    18.27
 16.0s        11    18.03
 18.0s        10    17.91
 20.0s        10    18.02
 22.0s         8    18.00
 24.0s         7    17.97
 26.0s         4    18.28
 28.0s         2    18.75
 30.0s         0        -
 32.0s         0        -
 34.0s         0        -
 36.0s         3    19.50
 38.0s         5    19.54
 40.0s         7    19.47
 42.0s         9    19.48
 44.0s        12    19.58
 46.0s        11    19.75
 48.0s        10    19.82
 50.0s        11    19.94
 52.0s         9    20.03
 54.0s         6    20.10
 56.0s         4    19.98
 58.0s         3    19.90
47 readings, 34 windows'
for w in 1 2 4; do
  check "moving_average -w $w" "$expected" timeout 60 "$BIN" -w $w examples/moving_average.lua
done
check "moving_average 20 9 -w 2" 'start   readings  average
 -8.0s         2    19.95
 -6.0s         3    19.73
 -4.0s         5    19.60
 -2.0s         7    19.53
  0.0s         9    19.51
  2.0s         7    19.39
  4.0s         6    19.40
  6.0s         4    19.40
  8.0s         2    19.45
9 readings, 9 windows' timeout 60 "$BIN" -w 2 examples/moving_average.lua 20 9
finish
