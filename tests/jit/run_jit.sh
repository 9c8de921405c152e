#!/bin/sh
# run_jit.sh NNCC MKIDX -- `nncc run` against the make-built trainer:
#  - the JIT (in a JIT build) and the cc fallback give step losses and
#    checkpoints bit-identical to generated/Makefile's gcc trainer (same
#    seed, same threads); so do `grads` (JIT) and `eval` (fallback), and
#    -O0 (fallback)
#  - each run says on stderr which path it took
#  - the JIT's trainer compiled in one part or in five (NNCC_JIT_PARTS):
#    the same bits
#  - errors: a compile error in the generated code is reported as
#    file:line:col, once, and nothing runs (NNCC_JIT_INJECT_ERROR=1), a missing
#    libomp (NNCC_LIBOMP) and a missing cc give one clear line, usage errors
#    exit 2
set -u
nncc=$1 mkidx=$2
repo=$(pwd)
tmp=$(mktemp -d) || exit 1
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
export NNCC_CACHE_DIR="$tmp/cache" # nncc run caches here, not in ~/.cache
fail() { echo "FAIL: $*"; exit 1; }
# run NAME EXPECTED_STATUS CMD... : output to $tmp/NAME.out (stdout) and .err
run() {
  name=$1 want=$2; shift 2
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
  got=$?
  [ "$got" = "$want" ] || { cat "$tmp/$name.out" "$tmp/$name.err"; fail "$name: exit $got, want $want: $*"; }
}
mkdir "$tmp/data" "$tmp/make"
"$mkidx" "$tmp/data" 512 64 || fail mkidx
train="train --data $tmp/data --steps 4 --seed 7 --threads 2"

# The reference: generated/Makefile with gcc.
"$nncc" models/mnist_cnn.nn -o "$tmp/make/mnist_cnn.c" || fail nncc
make -s -C "$tmp/make" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=gcc mnist_cnn \
  > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make"; }
run make 0 "$tmp/make/mnist_cnn" $train --step-log "$tmp/make.jsonl" --save "$tmp/make.st"
run make_grads 0 "$tmp/make/mnist_cnn" grads --data "$tmp/data" --load "$tmp/make.st" --out "$tmp/make.g"
run make_eval 0 "$tmp/make/mnist_cnn" eval --data "$tmp/data" --load "$tmp/make.st"
[ "$(wc -l < "$tmp/make.jsonl")" = 4 ] || fail "make: no 4 step losses"

same() { # same NAME: NAME's step log and checkpoint equal make's, bit for bit
  cmp -s "$tmp/make.jsonl" "$tmp/$1.jsonl" || fail "$1: step losses differ from the make-built trainer"
  cmp -s "$tmp/make.st" "$tmp/$1.st" || fail "$1: checkpoint differs from the make-built trainer"
}

# The JIT, when this nncc has one.
run probe 1 env NNCC_JIT_INJECT_ERROR=1 "$nncc" run models/mnist_cnn.nn train
if grep -q "nncc: run: compiling in memory failed" "$tmp/probe.err"; then
  jit=yes
  grep -q "^/nncc/mnist_cnn.c:[0-9]*:[0-9]*: error: use of undeclared identifier 'no_such_identifier'" \
    "$tmp/probe.err" || { cat "$tmp/probe.err"; fail "JIT: compile error without file:line:col"; }
  # the trainer's front end runs once, however many parts: one error
  [ "$(grep -c "error: use of undeclared identifier" "$tmp/probe.err")" = 1 ] ||
    { cat "$tmp/probe.err"; fail "JIT: the compile error printed more than once"; }
  run jit 0 "$nncc" run models/mnist_cnn.nn $train --step-log "$tmp/jit.jsonl" --save "$tmp/jit.st"
  grep -q "^nncc: run: compiled in-process with clang [0-9.]* (JIT) in [0-9.]* s$" "$tmp/jit.err" ||
    { cat "$tmp/jit.err"; fail "JIT: no line saying it ran in-process"; }
  same jit
  # the trainer's unit cut as one part, and dealt into five parts (its
  # kernels spread over five modules): the same bits
  for parts in 1 5; do
    run "jit_parts$parts" 0 env NNCC_JIT_PARTS=$parts "$nncc" run --no-cache models/mnist_cnn.nn $train \
      --step-log "$tmp/jit_parts$parts.jsonl" --save "$tmp/jit_parts$parts.st"
    same "jit_parts$parts"
  done
  run jit_parts_bad 1 env NNCC_JIT_PARTS=0 "$nncc" run --no-cache models/mnist_cnn.nn $train
  [ "$(cat "$tmp/jit_parts_bad.err")" = "nncc: run: NNCC_JIT_PARTS='0': want a number of parts from 1 to 16" ] ||
    { cat "$tmp/jit_parts_bad.err"; fail "NNCC_JIT_PARTS=0: unclear message"; }
  run jit_grads 0 "$nncc" run models/mnist_cnn.nn grads --data "$tmp/data" --load "$tmp/make.st" --out "$tmp/jit.g"
  cmp -s "$tmp/make.g" "$tmp/jit.g" || fail "JIT: grads differ from the make-built trainer"
  run nolibomp 1 env NNCC_LIBOMP=/nonexistent/libomp.so.5 "$nncc" run models/mnist_cnn.nn $train
  [ "$(cat "$tmp/nolibomp.err")" = "nncc: run: cannot load the OpenMP runtime: /nonexistent/libomp.so.5: cannot open shared object file: No such file or directory (install libomp5-14, or set NNCC_LIBOMP to its path)" ] ||
    { cat "$tmp/nolibomp.err"; fail "missing libomp: unclear message"; }
  # without its JIT library nncc says so and compiles with cc, same bits
  run nojitlib 0 env NNCC_JIT_LIB=/nonexistent/libnncc_jit.so "$nncc" run models/mnist_cnn.nn $train \
    --step-log "$tmp/nojitlib.jsonl" --save "$tmp/nojitlib.st"
  grep -q "^nncc: run: cannot load the JIT: /nonexistent/libnncc_jit.so: cannot open shared object file: No such file or directory; compiled with cc in [0-9.]* s$" \
    "$tmp/nojitlib.err" || { cat "$tmp/nojitlib.err"; fail "missing JIT library: unclear message"; }
  same nojitlib
  echo "ok: JIT: train and grads bit-identical to the make-built trainer, split by default, whole and in five parts; errors reported"
  why="JIT off (--no-jit)"
else
  jit=no
  grep -q "error: .*no_such_identifier" "$tmp/probe.err" || { cat "$tmp/probe.err"; fail "probe"; }
  why="no JIT in this build"
fi

# The fallback: cc + dlopen (forced by --no-jit or NNCC_NO_JIT=1 in a JIT build).
run cc 0 env NNCC_CACHE_DIR="$tmp/cache-cc" "$nncc" run --no-jit models/mnist_cnn.nn $train \
  --step-log "$tmp/cc.jsonl" --save "$tmp/cc.st"
grep -q "^nncc: run: $why; compiled with cc in [0-9.]* s$" "$tmp/cc.err" ||
  { cat "$tmp/cc.err"; fail "fallback: no line saying it used cc"; }
same cc
run cc_eval 0 env NNCC_NO_JIT=1 "$nncc" run models/mnist_cnn.nn eval --data "$tmp/data" --load "$tmp/make.st"
cmp -s "$tmp/make_eval.out" "$tmp/cc_eval.out" || fail "fallback: eval prints something else than make's trainer"
run cc_O0 0 env NNCC_NO_JIT=1 "$nncc" -O0 run models/mnist_cnn.nn $train --step-log "$tmp/cc_O0.jsonl" --save "$tmp/cc_O0.st"
same cc_O0
run cc_error 1 env NNCC_JIT_INJECT_ERROR=1 "$nncc" run --no-jit models/mnist_cnn.nn $train --step-log "$tmp/x.jsonl"
grep -q "mnist_cnn.c:[0-9]*:[0-9]*: error: .*no_such_identifier" "$tmp/cc_error.err" ||
  { cat "$tmp/cc_error.err"; fail "fallback: compile error without file:line:col"; }
[ -e "$tmp/x.jsonl" ] && fail "fallback: trained despite a compile error"
run nocc 1 env PATH=/nonexistent "$nncc" run --no-jit models/mnist_cnn.nn $train
[ "$(cat "$tmp/nocc.err")" = "nncc: run: no C compiler: 'cc' is not on PATH (install gcc or clang, or set CC)" ] ||
  { cat "$tmp/nocc.err"; fail "no cc: unclear message"; }
ls "${TMPDIR:-/tmp}" | grep -q "^nncc-run-" && echo "note: nncc-run-* directories in ${TMPDIR:-/tmp}"
echo "ok: fallback: train, eval and -O0 bit-identical to the make-built trainer; errors reported"

# Usage errors.
run usage1 2 "$nncc" run
run usage2 2 "$nncc" run models/mnist_cnn.nn -o x.c
grep -q "run needs a model file" "$tmp/usage1.err" || fail "nncc run: unclear usage error"
echo "ok: nncc run (JIT: $jit) and its errors"
