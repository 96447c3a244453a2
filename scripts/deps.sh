#!/bin/sh
# Installs the Debian packages sluice needs to build and test.
# Run as root it uses apt-get; otherwise it prints the command and fails.
set -e
# luarocks: tests/module/rockspec.sh installs sluice with it into a temporary tree
PKGS="gcc make pkg-config liblua5.4-dev lua5.4 lua-unit lua-cjson libreadline-dev tmux luarocks"
# clang (with libFuzzer): make fuzz
PKGS="$PKGS clang"
# Redis Streams (sluice.redis): the hiredis client library; redis-server for
# the tests, which start their own; lua-redis and lua-socket for the
# benchmark's plain-Lua baseline
PKGS="$PKGS libhiredis-dev redis-server lua-redis lua-socket"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
else
  echo "deps: missing packages:$missing" >&2
  echo "deps: run: sudo apt-get install -y$missing" >&2
  exit 1
fi
