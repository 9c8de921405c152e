#!/bin/sh
# run_leak.sh NNCC JIT_REPEAT -- four JIT compiles of tiny.nn in one
# process (one of them failing) leak nothing and do not grow the heap
# (jit_repeat.c says how; LeakSanitizer fails it on any leak at exit).
set -u
nncc=$1 repeat=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$nncc" tests/jit/tiny.nn -o "$tmp/tiny.c" || { echo "FAIL: nncc"; exit 1; }
"$repeat" "$tmp/tiny.c" 4 > "$tmp/out" 2> "$tmp/err"
rc=$?
cat "$tmp/out"
[ $rc = 0 ] || { cat "$tmp/err"; echo "FAIL: jit_repeat exited with $rc"; exit 1; }
grep -q "model.c:[0-9]*:[0-9]*: error: use of undeclared identifier 'no_such_identifier'" "$tmp/err" ||
  { cat "$tmp/err"; echo "FAIL: the failing compile did not report file:line:col"; exit 1; }
