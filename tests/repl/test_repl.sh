#!/bin/sh
# REPL behaviour tests: drives the sluice REPL through a real pseudo-terminal
# (a tmux pane on a private server) and checks what the terminal shows.
#   usage: sh tests/repl/test_repl.sh build/sluice
# Prints "ok NAME" or "FAIL NAME" (with the pane's text) per check, then
# "N passed, M failed"; exits non-zero when a check failed.
#
# How the transcript is read: capture-pane -S - gives the whole scrollback,
# whose line numbers stay put as output grows (nothing here clears the
# screen). Before typing a line, `mark` remembers the number of the last
# line (the prompt the text will be typed on); the checks then look only at
# the lines after it, i.e. at what the REPL printed in answer.

BIN=${1:?usage: sh tests/repl/test_repl.sh path/to/sluice}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac

passed=0
failed=0
SOCK=sluice-test-$$
S=repl                       # session name
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/sluice-repl.XXXXXX") || exit 1
CONF=$TMPD/tmux.conf
HOMED=$TMPD/home
mkdir -p "$HOMED"

SOCKPATH=
cleanup() {
  tmux -L "$SOCK" kill-server >/dev/null 2>&1
  [ -n "$SOCKPATH" ] && rm -f "$SOCKPATH"    # tmux leaves the socket file
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT HUP TERM

tm() { tmux -L "$SOCK" "$@"; }

# ---- helpers ---------------------------------------------------------------

# The whole transcript, trailing blanks and trailing empty lines removed.
transcript() {
  tm capture-pane -p -J -S - -t "$S" 2>/dev/null |
    sed 's/[[:space:]]*$//' |
    awk '{ line[NR] = $0; if ($0 != "") last = NR }
         END { for (i = 1; i <= last; i++) print line[i] }'
}

# What the REPL printed after the mark.
since_mark() { transcript | tail -n +"$((MARK + 1))"; }

mark() { MARK=$(transcript | wc -l); }

pane_dead() { [ "$(tm display-message -p -t "$S" '#{pane_dead}' 2>/dev/null)" != 0 ]; }

# wait_all SECONDS REGEX... : polls every 0.1 s until each extended regex
# matches a line printed since the mark; fails after SECONDS (may be
# fractional) or as soon as the REPL process is gone.
wait_all() {
  tries=$(awk -v s="$1" 'BEGIN { print int(s * 10 + 0.5) }')
  shift
  while :; do
    out=$(since_mark)
    all=1
    for re in "$@"; do
      printf '%s\n' "$out" | grep -Eq -- "$re" || { all=0; break; }
    done
    [ $all = 1 ] && return 0
    [ "$tries" -le 0 ] && { why="timed out waiting for /$re/"; return 1; }
    pane_dead && { why="the REPL exited while waiting for /$re/"; return 1; }
    tries=$((tries - 1))
    sleep 0.1
  done
}

# wait_for REGEX SECONDS
wait_for() { wait_all "$2" "$1"; }

# Types one line (literally) and Enter, after marking the transcript.
type_line() {
  mark
  tm send-keys -t "$S" -l -- "$1" && tm send-keys -t "$S" Enter
}

PROMPT='^sluice>$'           # an empty prompt line, trailing blank stripped
CONT='^>>$'                  # an empty continuation prompt

# expect LINE REGEX [SECONDS]: types LINE, waits for REGEX and the prompt.
expect() {
  type_line "$1" || { why="send-keys failed"; return 1; }
  wait_all "${3:-5}" "$2" "$PROMPT"
}

cursor_x() { tm display-message -p -t "$S" '#{cursor_x}'; }

check() { # NAME STATUS
  if [ "$2" = 0 ]; then
    echo "ok $1"; passed=$((passed + 1))
  else
    echo "FAIL $1: $why"; failed=$((failed + 1))
    echo "---- pane ----"
    transcript | sed 's/^/| /'
    echo "--------------"
  fi
}

# ---- start the REPL ----------------------------------------------------------

cat >"$CONF" <<EOF
set -g remain-on-exit on
set -g history-limit 50000
set -g default-terminal screen
EOF

# The pane runs the binary with a private HOME (history file) and no user
# readline or Lua start-up configuration.
tm -f "$CONF" new-session -d -s "$S" -x 200 -y 50 \
  "unset LUA_INIT LUA_INIT_5_4; HOME='$HOMED' INPUTRC=/dev/null; export HOME INPUTRC; exec '$BIN'" ||
  { echo "FAIL start: tmux could not start"; echo "0 passed, 1 failed"; exit 1; }
SOCKPATH=$(tm display-message -p '#{socket_path}')
MARK=0

# 1. the prompt "sluice> " appears, cursor after its blank
t_start() {
  wait_for '^sluice>' 5 || return 1
  x=$(cursor_x)
  [ "$x" = 8 ] || { why="cursor at column $x after the prompt, want 8 (\"sluice> \")"; return 1; }
}
t_start; check start $?

# 2. expressions auto-print through sluice.inspect, statements print nothing
t_expression() {
  expect '1+2' '^3$' || return 1
  expect '{1, "a"}' '^[{]1, "a"[}]$' || return 1
  type_line 'x = 5'
  wait_for "$PROMPT" 5 || return 1
  [ "$(since_mark | grep -c .)" = 1 ] || { why="'x = 5' printed something"; return 1; }
  expect 'x * 2' '^10$' || return 1
  # a top-level string prints as it is (lua5.4 does so too), lines and all;
  # inside a table it is quoted
  expect '"two\nlines"' '^lines$' || return 1
  [ "$(since_mark | grep -c '^two$')" = 1 ] || { why="the string's first line is not printed raw"; return 1; }
  expect '{"q"}' '^[{]"q"[}]$'
}
t_expression; check expression $?

# 3. an incomplete chunk continues on the ">> " prompt
t_multiline() {
  type_line 'function f(a)'
  wait_for "$CONT" 5 || return 1
  x=$(cursor_x)
  [ "$x" = 3 ] || { why="cursor at column $x after the continuation prompt, want 3 (\">> \")"; return 1; }
  type_line 'return a * 3'
  wait_for "$CONT" 5 || return 1
  type_line 'end'
  wait_for "$PROMPT" 5 || return 1
  expect 'f(4)' '^12$'
}
t_multiline; check multi-line $?

# 4. an error is reported and the REPL goes on
t_error() {
  expect 'error("boom")' 'boom' || return 1
  expect '1+1' '^2$'
}
t_error; check error $?

# 5. Ctrl-C interrupts a blocking call within a second
t_ctrl_c() {
  type_line 'sluice.sleep(60000)'
  sleep 0.5
  if since_mark | grep -Eq "$PROMPT"; then
    why="sluice.sleep(60000) returned before Ctrl-C"; return 1
  fi
  tm send-keys -t "$S" C-c
  wait_all 1 'interrupted' "$PROMPT" || return 1
  expect '2+2' '^4$'
}
t_ctrl_c; check ctrl-c $?

# 5b. Ctrl-C also stops the stages the interrupted entry started
t_ctrl_c_stages() {
  type_line 'P = sluice.start({type = "producer", handle_demand = function(n, s) local t = {} for i = 1, n do t[i] = i end return t, s end}, 0); C = sluice.start({type = "consumer", handle_events = function(e, f, s) return {}, s end}, nil, {subscribe_to = {P}}); C:await()'
  sleep 0.5
  if since_mark | grep -Eq "$PROMPT"; then
    why="C:await() returned before Ctrl-C"; return 1
  fi
  tm send-keys -t "$S" C-c
  wait_all 2 'interrupted' "$PROMPT" || return 1
  expect 'tostring(P:alive()) .. "," .. tostring(C:alive())' '^false,false$'
}
t_ctrl_c_stages; check ctrl-c-stages $?

# 7. worker output arrives as whole lines (run before 6, which exits)
t_worker_output() {
  expect 'sluice.task(function() for i=1,3 do print("line " .. i) end end):await()' \
    '^line 3$' || return 1
  got=$(since_mark | grep -E '^line [0-9]$' | tr '\n' ' ')
  [ "$got" = "line 1 line 2 line 3 " ] ||
    { why="want full lines 'line 1', 'line 2', 'line 3' in order, got: $got"; return 1; }
}
t_worker_output; check worker-output $?

# 8. Ctrl-C on a task that never returns: the prompt comes back, and the
#    task the entry started is interrupted too (on its worker, so it may
#    end just after the prompt is back: awaiting it again returns its
#    "interrupted" error rather than waiting for ever)
t_ctrl_c_busy_task() {
  type_line 'T = sluice.task(function() while true do end end); T:await()'
  sleep 0.5
  if since_mark | grep -Eq "$PROMPT"; then
    why="T:await() returned before Ctrl-C"; return 1
  fi
  tm send-keys -t "$S" C-c
  wait_all 2 'interrupted' "$PROMPT" || return 1
  expect 'select(2, pcall(T.await, T))' 'interrupted$' || return 1
  expect 'T:done()' '^true$'
}
t_ctrl_c_busy_task; check ctrl-c-busy-task $?

# 6. Ctrl-D on an empty line exits (within 5 s) and saves the history.
#    (The status is only noted: under load tmux may not have reaped the
#    process yet; test_exit.sh checks exit statuses.)
t_history() {
  mark
  tm send-keys -t "$S" C-d
  tries=50
  until pane_dead; do
    [ $tries -le 0 ] && { why="the REPL is still running 5 s after Ctrl-D"; return 1; }
    tries=$((tries - 1))
    sleep 0.1
  done
  st=$(tm display-message -p -t "$S" '#{pane_dead_status}')
  [ "$st" = 0 ] || echo "note: exit status after Ctrl-D was $st"
  h=$HOMED/.sluice_history
  [ -f "$h" ] || { why="$h was not written"; return 1; }
  grep -Fq 'x * 2' "$h" || { why="$h lacks 'x * 2'; it holds: $(cat "$h")"; return 1; }
}
t_history; check history $?

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
