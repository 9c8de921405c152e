#!/bin/sh
# run_stalled_log.sh NNCC MKIDX -- SIGINT and SIGTERM stop a trainer whose
# --step-log write is blocked on a FIFO whose reader stopped reading: the
# step finishes, the checkpoint is saved, the exit status is 130 / 143
# (docs/runtime.md).  The handlers once restarted the blocked write, and
# only SIGKILL, which saves nothing, could end the run.
set -u
nncc=$1 mkidx=$2
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap 'exec 3<&-; pkill -9 -f "$tmp/tiny" 2> /dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/data"
"$mkidx" "$tmp/data" 256 64 > /dev/null || exit 1
"$nncc" tests/jit/tiny.nn -o "$tmp/tiny.c" || exit 1
make -s -C "$tmp" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=${CC_FOR_MODELS:-cc} tiny > /dev/null || exit 1
mkfifo "$tmp/log"
exec 3<> "$tmp/log" # a reader that never reads: the pipe fills, the write blocks
fails=0
for sig in INT:130 TERM:143; do
  name=${sig%:*} want=${sig#*:}
  rm -f "$tmp/c.st" "$tmp/rc"
  ( "$tmp/tiny" train --data "$tmp/data" --epochs 1000000 --step-log "$tmp/log" --save "$tmp/c.st" \
      --quiet 2> /dev/null; echo $? > "$tmp/rc" ) &
  sleep 4 # ~64 KiB of step lines: the writer is blocked by now
  pkill -"$name" -f "$tmp/tiny"
  i=0
  while [ ! -s "$tmp/rc" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  rc=$(cat "$tmp/rc" 2> /dev/null || echo "none (still running)")
  if [ "$rc" != "$want" ]; then echo "FAIL: SIG$name with a stalled log: exit $rc, want $want"; fails=$((fails + 1)); fi
  "$tmp/tiny" eval --data "$tmp/data" --load "$tmp/c.st" > /dev/null ||
    { echo "FAIL: SIG$name with a stalled log: no loadable checkpoint"; fails=$((fails + 1)); }
  pkill -9 -f "$tmp/tiny" 2> /dev/null
  wait
  cat <&3 > /dev/null & # drain what the pipe holds, so the next run blocks afresh
  sleep 0.5; kill $! 2> /dev/null
done
echo "$((2 - fails)) passed, $fails failed"
[ $fails = 0 ]
