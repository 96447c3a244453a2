#!/bin/sh
# help() in the REPL lists every public function of the running library
# (tests/examples/api_names.lua lists them), one line each; help is the
# REPL's alone; the REPL's banner and -h say where the tour and the
# reference are.
#   usage: sh tests/repl/test_help.sh build/sluice
BIN=${1:?usage: sh tests/repl/test_help.sh path/to/sluice}
NAME_TMP=sluice-help
. "$(dirname "$0")/proc.inc"

names=$(timeout 60 "$BIN" -w 2 tests/examples/api_names.lua 2>&1)
run_in 'help()
' -i
help=$out
missing=
while read -r group name; do
  case $group in
    sluice) re="sluice\.$name\b" ;;
    flow) re="flow\.$name\b" ;;
    window) re="W\.$name\b" ;;
    dispatcher) re="(dispatcher)?\.$name\{" ;;
    redis) re="redis\.$name\b|\.$name\(" ;;
    *) re=":$name\b" ;;
  esac
  printf '%s\n' "$help" | grep -Eq "$re" || missing="$missing $group:$name"
done <<EOF2
$names
EOF2
rc=0; out=${missing# }; err=
check "help() names every public function" 0 "" ""

n=$(printf '%s\n' "$help" | grep -c '^  ')
rc=0; out=$([ "$n" -ge 40 ] && echo many); err=
check "help() prints one line per function or group ($n)" 0 "many" ""

run_in 'help()
' -i
first=$(printf '%s\n' "$out" | sed -n 2p)
rc=0; out=$first
check "the banner's second line points to help, the tour and the reference" 0 \
  "help() lists the sluice functions; the tour is README.md, the reference lua/README.md" ""

run -e 'print(type(help))'
check "scripts have no help global" 0 "nil" ""

run_in 'help = 5
=help
' -i
out=$(printf '%s\n' "$out" | sed -n 5p)
check "help is a plain global the user may replace" 0 "5" ""

run -h
err=$(printf '%s\n' "$err" | tail -n 3)
check "-h names the tour and the reference" 0 "" "Without a script (and stdin a terminal) it starts the REPL; help() there
lists the sluice functions. The tour: README.md; the API reference:
lua/README.md (both in the source tree)."
finish
