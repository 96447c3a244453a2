#!/bin/sh
# Scale-out over Redis Streams: several sluice processes share one
# consumer group (tests/redis/worker.lua: source -> map -> into_redis).
#   usage: sh tests/redis/scaleout.sh path/to/sluice
# Checks (each prints "ok NAME" or "FAIL NAME"), then "N passed, M failed":
#   conservation  N entries (REDIS_N, default 1000000), 3 processes: every
#                 entry written once, acknowledged once, nothing pending
#   kill-9        one of 3 processes killed with SIGKILL mid-stream: every
#                 entry written at least once (its pending entries are
#                 claimed by the others); the duplicates are counted
#   redis-restart redis-server (appendonly, fsync always) killed and
#                 started again mid-run: the processes carry on, nothing
#                 is lost
#   wordcount-across-processes  examples/redis_wordcount.lua as 3 processes
#                 with a partition across them: each word counted once, the
#                 counts those of one process
# Each check starts its own redis-server on a unix socket in a temporary
# directory (no TCP port). Skipped, with a message, without redis-server.
BIN=${1:?usage: sh tests/redis/scaleout.sh path/to/sluice}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
N=${REDIS_N:-1000000}
passed=0
failed=0

if ! command -v redis-server >/dev/null 2>&1; then
  echo "skip: redis-server is not installed (the Debian package redis-server; scripts/deps.sh installs it)"
  echo "0 passed, 0 failed"
  exit 0
fi

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/sluice-scaleout.XXXXXX") || exit 1
RPID=
cleanup() {
  [ -n "$RPID" ] && kill -9 "$RPID" 2>/dev/null
  for p in $WPIDS; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT HUP TERM

URL="unix://$TMPD/r.sock"

# start_redis [aof]: a redis-server on $TMPD/r.sock, waited for
start_redis() {
  if [ "$1" = aof ]; then persist="--appendonly yes --appendfsync always"; else persist="--appendonly no"; fi
  rm -f "$TMPD/pid"
  redis-server --port 0 --unixsocket "$TMPD/r.sock" --dir "$TMPD" --daemonize yes \
    --pidfile "$TMPD/pid" --logfile "$TMPD/redis.log" --save '' $persist >/dev/null 2>&1
  tries=500
  until [ -s "$TMPD/pid" ] && "$BIN" -e "sluice.redis.connect('$URL'):call('PING')" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ $tries -le 0 ] && { echo "redis-server did not start: $(tail -n 5 "$TMPD/redis.log")"; return 1; }
    sleep 0.01
  done
  RPID=$(cat "$TMPD/pid")
}

stop_redis() {
  kill -9 "$RPID" 2>/dev/null
  while kill -0 "$RPID" 2>/dev/null; do sleep 0.01; done
  RPID=
  rm -f "$TMPD/r.sock"
}

fresh() { # fresh [aof]: a new, empty server
  [ -n "$RPID" ] && stop_redis
  rm -rf "$TMPD/appendonlydir" "$TMPD"/w*.out "$TMPD"/w*.err
  start_redis "$@"
}

check() { # NAME STATUS
  if [ "$2" = 0 ]; then echo "ok $1"; passed=$((passed + 1))
  else echo "FAIL $1: $why"; failed=$((failed + 1)); fi
}

# workers K CLAIM_MS: starts K worker processes (w1..wK), output in $TMPD/wI.out
workers() {
  WPIDS=
  i=1
  while [ $i -le "$1" ]; do
    "$BIN" "$HERE/worker.lua" "$URL" "w$i" "$2" >"$TMPD/w$i.out" 2>"$TMPD/w$i.err" &
    WPIDS="$WPIDS $!"
    i=$((i + 1))
  done
}

# out_len: XLEN out
out_len() { "$BIN" -e "print(sluice.redis.connect('$URL'):call('XLEN', 'out'))" 2>/dev/null; }

# wait_out K: until at least K entries were written to "out"
wait_out() {
  until [ "$(out_len)" -ge "$1" ] 2>/dev/null; do sleep 0.05; done
}

# ---- conservation ---------------------------------------------------------------
t_conservation() {
  fresh || return 1
  "$BIN" "$HERE/fill.lua" "$URL" "$N" >/dev/null || { why="fill failed"; return 1; }
  workers 3 30000
  for p in $WPIDS; do wait "$p" || { why="a worker failed: $(cat "$TMPD"/w*.err)"; return 1; }; done
  WPIDS=
  got=$("$BIN" "$HERE/check.lua" "$URL" "$N")
  acked=$(cat "$TMPD"/w*.out | awk '{ s += $5 } END { print s }')
  wrote=$(cat "$TMPD"/w*.out | awk '{ s += $3 } END { print s }')
  echo "  $N entries, 3 processes: $(cat "$TMPD"/w*.out | tr '\n' ';') $got"
  [ "$got" = "missing 0 duplicates 0 entries $N pending 0" ] || { why="got: $got"; return 1; }
  [ "$acked" = "$N" ] || { why="acknowledged $acked, want $N"; return 1; }
  [ "$wrote" = "$N" ] || { why="wrote $wrote, want $N"; return 1; }
}
t_conservation; check conservation $?

# ---- kill -9 of one process ------------------------------------------------------
t_kill() {
  fresh || return 1
  n=$((N / 5))
  "$BIN" "$HERE/fill.lua" "$URL" "$n" >/dev/null || { why="fill failed"; return 1; }
  workers 3 1000
  set -- $WPIDS
  wait_out $((n / 5))
  kill -9 "$2"
  wait "$2" 2>/dev/null
  for p in "$1" "$3"; do wait "$p" || { why="a survivor failed: $(cat "$TMPD"/w*.err)"; return 1; }; done
  WPIDS=
  got=$("$BIN" "$HERE/check.lua" "$URL" "$n")
  echo "  $n entries, w2 killed at $((n / 5)) written: $(cat "$TMPD"/w1.out "$TMPD"/w3.out | tr '\n' ';') $got"
  case $got in "missing 0 duplicates "*" pending 0") ;; *) why="got: $got"; return 1 ;; esac
}
t_kill; check kill-9 $?

# ---- redis-server killed and started again ------------------------------------------
t_restart() {
  fresh aof || return 1
  n=$((N / 10))
  "$BIN" "$HERE/fill.lua" "$URL" "$n" >/dev/null || { why="fill failed"; return 1; }
  workers 2 2000
  wait_out $((n / 4))
  stop_redis
  sleep 0.5
  start_redis aof || return 1
  for p in $WPIDS; do wait "$p" || { why="a worker failed: $(cat "$TMPD"/w*.err)"; return 1; }; done
  WPIDS=
  got=$("$BIN" "$HERE/check.lua" "$URL" "$n")
  echo "  $n entries, redis killed at $((n / 4)) written: $(cat "$TMPD"/w*.out | tr '\n' ';') $got"
  case $got in "missing 0 duplicates "*" pending 0") ;; *) why="got: $got"; return 1 ;; esac
  grep -q "connected again" "$TMPD"/w*.err || { why="no worker said it connected again: $(cat "$TMPD"/w*.err)"; return 1; }
}
t_restart; check redis-restart $?

# ---- a keyed count across processes ----------------------------------------------
# examples/redis_wordcount.lua: 3 processes, partition({redis = ...}) into 4
# partition streams; each word counted by exactly one process
t_wordcount() {
  fresh || return 1
  ex="$HERE/../../examples/redis_wordcount.lua"
  i=0
  : >"$TMPD/text.txt"
  while [ $i -lt 40 ]; do cat "$HERE/../../examples/data/text.txt" >>"$TMPD/text.txt"; i=$((i + 1)); done
  "$BIN" "$ex" --fill "$URL" "$TMPD/text.txt" || { why="fill failed"; return 1; }
  WPIDS=
  for i in 1 2 3; do
    "$BIN" "$ex" --worker "$URL" $i 3 >"$TMPD/w$i.out" 2>"$TMPD/w$i.err" &
    WPIDS="$WPIDS $!"
  done
  for p in $WPIDS; do wait "$p" || { why="a worker failed: $(cat "$TMPD"/w*.err)"; return 1; }; done
  WPIDS=
  got=$("$BIN" "$ex" --print "$URL" 2>&1)
  want='17400 words, 172 distinct
the      3160
and      1120
gate     520
wheel    520
river    400
water    360
a        320
in       240
that     240
for      200'
  [ "$got" = "$want" ] || { why="got: $got"; return 1; }
  echo "  40 copies of examples/data/text.txt, 3 processes, 4 partition streams: $(echo "$got" | head -n 1)"
}
t_wordcount; check wordcount-across-processes $?

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
