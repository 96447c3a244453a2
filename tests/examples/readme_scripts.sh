#!/bin/sh
# The documentation's complete scripts are the files under examples/, and
# every command and REPL session the pages show prints what they show
# (tests/examples/readme_scripts.lua says how the pages mark them).
#   usage: sh tests/examples/readme_scripts.sh path/to/sluice
BIN=${1:?usage: sh tests/examples/readme_scripts.sh path/to/sluice}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
export HOME=$(mktemp -d "${TMPDIR:-/tmp}/sluice-readme.XXXXXX") INPUTRC=/dev/null TERM=dumb
trap 'rm -rf "$HOME"' EXIT
"$BIN" -w 2 tests/examples/readme_scripts.lua "$BIN" README.md lua/README.md examples/README.md
