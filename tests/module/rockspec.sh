#!/bin/sh
# sluice-*.rockspec: `luarocks make` in a copy of the source tree builds
# and installs the module and the binary into a temporary tree (Debian's
# luarocks, installed by scripts/deps.sh); then the installed module, found
# through `luarocks path`, runs a Flow on two workers in lua5.4, and so
# does the installed binary.
#   usage: sh tests/module/rockspec.sh path/to/sluice
# The sanitizer builds skip it (and say so): it builds and installs the
# plain program, which `make test` checks.
BIN=${1:?usage: sh tests/module/rockspec.sh path/to/sluice}
. tests/examples/check.inc
case $(basename "$(dirname "$BIN")") in
  build-*) echo "skip: the rockspec installs the plain build; make test checks it"; finish; exit ;;
esac
ROOT=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-rock.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rocks() { HOME=$tmp/home luarocks --lua-version 5.4 "$@"; }

check "luarocks is installed (scripts/deps.sh installs it)" "yes" \
  sh -c 'command -v luarocks >/dev/null && echo yes || echo "no luarocks"'
set -- sluice-*.rockspec
check "one rockspec, named after the version" "sluice-$("$BIN" -e 'io.write(sluice.version)')-1.rockspec" echo "$*"
rockspec=$1

# a clone: the files the build needs, without build outputs
mkdir -p "$tmp/src" "$tmp/home"
tar cf - Makefile engine lua scripts "$rockspec" | tar xf - -C "$tmp/src"
# the make that runs `make test` must not pass its variables (SANITIZER,
# BUILD...) to the one luarocks runs
(cd "$tmp/src" && env -u MAKELEVEL -u MFLAGS MAKEFLAGS=-j2 HOME="$tmp/home" \
   luarocks --lua-version 5.4 make --tree "$tmp/tree" "$rockspec") >"$tmp/log" 2>&1
check "luarocks make installs the rock" "sluice 0.1.0-1 is now installed in $tmp/tree" \
  sh -c "grep 'is now installed' '$tmp/log' || tail -n 20 '$tmp/log'"
check "the tree holds the module and the binary" "sluice	0.1.0-1	installed	$tmp/tree/lib/luarocks/rocks-5.4
bin/sluice
lib/lua/5.4/sluice.so" sh -c "HOME='$tmp/home' luarocks --lua-version 5.4 list --porcelain --tree '$tmp/tree';
  cd '$tmp/tree' && ls bin/sluice lib/lua/5.4/sluice.so"

# the installed programs, from another directory, with luarocks' paths
flow_out="workers	2
a=2 and=2 brown=1 dog=3 fox=2 jumps=1 lazy=1 over=3 quick=1 sleeps=1 the=3
the layer ran on workers	1 2"
mkdir "$tmp/elsewhere"
installed() {
  (cd "$tmp/elsewhere" && eval "$(rocks path --tree "$tmp/tree")" && SLUICE_WORKERS=2 "$@")
}
check "lua5.4 finds the installed module" "$tmp/tree/lib/lua/5.4/sluice.so" \
  installed lua5.4 -e 'print(package.searchpath("sluice", package.cpath))'
check "the installed module runs a flow on two workers" "$flow_out" \
  installed lua5.4 -l sluice "$ROOT/tests/module/flow_two_workers.lua"
check "the installed binary is on PATH" "$tmp/tree/bin/sluice" installed sh -c 'command -v sluice'
check "the installed binary runs the same flow" "$flow_out" \
  installed sluice "$ROOT/tests/module/flow_two_workers.lua"
finish
