#!/bin/sh
# Every public function of the library (listed at run time by
# tests/examples/api_names.lua: the fields of sluice, sluice.flow,
# sluice.window, sluice.dispatcher and the methods of every handle) is
# documented in lua/README.md and used by at least one example under
# examples/ (whose output a check of tests/examples compares). A function
# added to the library without both fails here.
#   usage: sh tests/examples/api_coverage.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/api_coverage.sh path/to/sluice}
. "$(dirname "$0")/check.inc"

names=$(timeout 60 "$BIN" -w 2 tests/examples/api_names.lua 2>&1) ||
  { echo "FAIL api_names.lua"; printf '%s\n' "$names" | sed 's/^/    /'; echo "0 passed, 1 failed"; exit 1; }
check "the library lists 90 or more public functions" "yes" \
  sh -c "[ $(printf '%s\n' "$names" | wc -l) -ge 90 ] && echo yes"

# the examples' code, comment lines left out
code=$(grep -hv '^[[:space:]]*--' examples/*.lua)

# how a use looks in code, and how the reference names it
use_re() { # GROUP NAME
  case $1 in
    sluice) printf "%s\n" "sluice\.$2\b" ;;
    flow) printf "%s\n" "(^|[^[:alnum:]_])flow\.$2\b" ;;
    window) printf "%s\n" "(window|W)\.$2\b" ;;
    dispatcher) printf "%s\n" "dispatcher\.$2\b" ;;
    redis) printf "%s\n" "redis\.$2\b" ;;
    *) printf "%s\n" ":$2[[:space:]]*[({\"]" ;;
  esac
}
doc_re() {
  case $1 in
    sluice) printf "%s\n" "sluice\.$2\b" ;;
    flow) printf "%s\n" "flow\.$2\b" ;;
    window) printf "%s\n" "(window|W)\.$2\b" ;;
    dispatcher) printf "%s\n" "dispatcher\.$2\b" ;;
    redis) printf "%s\n" "redis\.$2\b" ;;
    *) printf "%s\n" ":$2\b" ;;
  esac
}

no_example=; no_doc=
while read -r group name; do
  printf '%s\n' "$code" | grep -Eq "$(use_re "$group" "$name")" || no_example="$no_example $group:$name"
  grep -Eq "$(doc_re "$group" "$name")" lua/README.md || no_doc="$no_doc $group:$name"
done <<EOF2
$names
EOF2
check "every public function is used by an example" "" echo ${no_example# }
check "every public function is in lua/README.md" "" echo ${no_doc# }
finish
