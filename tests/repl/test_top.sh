#!/bin/sh
# sluice.top() in the REPL (a tmux pane on a private server): it shows
# sluice.stats() as a table, redrawn while the stages run, until a key is
# pressed or Ctrl-C; then the prompt comes back and the REPL goes on.
# Without a terminal on stdin it raises.
#   usage: sh tests/repl/test_top.sh build/sluice
BIN=${1:?usage: sh tests/repl/test_top.sh path/to/sluice}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

passed=0
failed=0
SOCK=sluice-top-$$
S=top
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/sluice-top.XXXXXX") || exit 1
mkdir -p "$TMPD/home"
SOCKPATH=
cleanup() {
  tmux -L "$SOCK" kill-server >/dev/null 2>&1
  [ -n "$SOCKPATH" ] && rm -f "$SOCKPATH"
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT HUP TERM
tm() { tmux -L "$SOCK" "$@"; }

screen() { tm capture-pane -p -t "$S" 2>/dev/null | sed 's/[[:space:]]*$//'; }

# wait_for REGEX SECONDS: polls the visible screen
wait_for() {
  tries=$(($2 * 10))
  while :; do
    screen | grep -Eq -- "$1" && return 0
    [ "$tries" -le 0 ] && { why="timed out waiting for /$1/"; return 1; }
    tries=$((tries - 1))
    sleep 0.1
  done
}

check() { # NAME STATUS
  if [ "$2" = 0 ]; then
    echo "ok $1"; passed=$((passed + 1))
  else
    echo "FAIL $1: $why"; failed=$((failed + 1))
    screen | sed 's/^/| /'
  fi
}

type_line() { tm send-keys -t "$S" -l -- "$1" && tm send-keys -t "$S" Enter; }

printf 'set -g remain-on-exit on\nset -g default-terminal screen\n' >"$TMPD/tmux.conf"
tm -f "$TMPD/tmux.conf" new-session -d -s "$S" -x 150 -y 40 \
  "unset LUA_INIT LUA_INIT_5_4; HOME='$TMPD/home' INPUTRC=/dev/null; export HOME INPUTRC; exec '$BIN' -w 2" ||
  { echo "FAIL start: tmux could not start"; echo "0 passed, 1 failed"; exit 1; }
SOCKPATH=$(tm display-message -p '#{socket_path}')

t_table() {
  wait_for '^sluice>' 5 || return 1
  # a producer and a slow consumer: the counters keep moving
  type_line 'p = sluice.from_enumerable(sluice.range(1, math.huge), { name = "numbers" }); c = sluice.start({ type = "consumer", handle_events = function(_, _, s) sluice.sleep(5) return {}, s end }, nil, { name = "slow", subscribe_to = { { p, max_demand = 10 } } })'
  type_line 'sluice.top({ ms = 100 })'
  wait_for '^sluice.top: 2 live stages$' 5 || return 1
  wait_for '^name +type +worker +in +out +demand +buffered +late$' 5 || return 1
  wait_for '^numbers +producer +[0-9]+ +0 +[0-9]+ ' 5 || return 1
  wait_for '^slow +consumer +[0-9]+ +[0-9]+ +0 ' 5 || return 1
  wait_for '^\(press a key to stop\)$' 5 || return 1
}
t_table; check "top shows every live stage's stats" $?

t_refresh() {
  first=$(screen | grep '^slow ')
  tries=30
  while [ "$(screen | grep '^slow ')" = "$first" ]; do
    [ "$tries" -le 0 ] && { why="the slow consumer's line stayed '$first'"; return 1; }
    tries=$((tries - 1)); sleep 0.1
  done
}
t_refresh; check "the table is redrawn as the counters move" $?

t_key() {
  tm send-keys -t "$S" q
  wait_for '^sluice>$' 5 || return 1
  type_line 'print("after top", #sluice.stats())'
  wait_for '^after top +2$' 5
}
t_key; check "a key press ends it; the REPL goes on" $?

t_ctrl_c() {
  type_line 'sluice.top()'
  wait_for '^sluice.top: 2 live stages$' 5 || return 1
  tm send-keys -t "$S" C-c
  wait_for '^sluice>$' 5 || return 1
  screen | grep -q 'interrupted' && { why="Ctrl-C printed an error"; return 1; }
  type_line 'p:stop(); print("stopped", #sluice.stats())'
  wait_for '^stopped +0$' 5
}
t_ctrl_c; check "Ctrl-C ends it without an error" $?

t_no_terminal() {
  out=$(echo | timeout 10 "$BIN" -e 'sluice.top()' 2>&1)
  printf '%s\n' "$out" | grep -q 'sluice.top: stdin must be a terminal (a key press ends it)' ||
    { why="got: $out"; return 1; }
}
t_no_terminal; check "without a terminal on stdin it raises" $?

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
