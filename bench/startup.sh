#!/bin/sh
# startup.sh [NNCC [MKIDX]] -- time to the first training step: from the
# start of the process that trains to its first --step-log line (train
# --steps 1 --threads T), for mnist_cnn and vgg16, via
#   jit   nncc run            (compiled in-process with clang; JIT builds)
#   cc    nncc run --no-jit   (cc into a shared object, dlopen)
#   make  nncc -o X.c, then make -f generated/Makefile with gcc, then the
#         trainer (the time of all three)
# nncc run is timed three ways, with a cache of its own (NNCC_CACHE_DIR):
#   cold    an empty cache: the runtime and the model are compiled
#   new     the runtime is cached (another model ran before), the model not
#   cached  the same model ran before: nothing is compiled
# "compile" is what each path spends compiling (the `nncc: run:` line, or
# nncc + make).  Data: a small IDX set mkidx writes (loading is not timed
# apart; it is the same for all three).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
nncc=$(realpath "${1:-$repo/build/gcc/nncc}")
mkidx=$(realpath "${2:-$(dirname "$nncc")/tests/mkidx}")
threads=${THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$repo"
mkdir "$tmp/data"
"$mkidx" "$tmp/data" 1024 64 > /dev/null
now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{ printf "%.1f", $1 - $2 }'; }
train="train --data $tmp/data --steps 1 --threads $threads --quiet"

# first_step LOG CMD...: run CMD in the background, seconds until LOG has a line
first_step() {
  log=$1; shift
  rm -f "$log"
  t0=$(now)
  "$@" --step-log "$log" > "$tmp/out" 2> "$tmp/err" &
  pid=$!
  while [ ! -s "$log" ] && kill -0 $pid 2> /dev/null; do sleep 0.05; done
  t=$(since "$t0")
  wait $pid || { cat "$tmp/err" >&2; echo "failed: $*" >&2; exit 1; }
  echo "$t"
}
compile_of() { sed -n 's/^nncc: run: .* in \([0-9.]*\) s\( (.*)\)*$/\1/p' "$tmp/err"; }
export NNCC_CACHE_DIR="$tmp/cache"

printf "%-10s %-12s %10s %16s   (%s, %s threads)\n" model path compile_s first_step_s \
  "$(uname -m)" "$threads"
# run_three PATH [--no-jit]: cold, new and cached rows for $model
run_three() {
  label=$1; shift
  for state in cold new cached; do
    case $state in
      cold) rm -rf "$NNCC_CACHE_DIR" ;;
      new) rm -rf "$NNCC_CACHE_DIR"
           "$nncc" run "$@" models/lenet5.nn $train > /dev/null 2>&1 ;;
    esac
    t=$(first_step "$tmp/run.jsonl" "$nncc" run "$@" models/$model.nn $train)
    printf "%-10s %-12s %10s %16s\n" $model "$label $state" "$(compile_of)" "$t"
  done
}
for model in mnist_cnn vgg16; do
  "$nncc" run models/$model.nn $train > /dev/null 2> "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  if grep -q "(JIT)" "$tmp/err"; then # else a build without the JIT: that was cc
    run_three jit
    run_three cc --no-jit
  else
    run_three cc
  fi
  mkdir -p "$tmp/make"
  rm -rf "$tmp/make/.build"
  t0=$(now)
  "$nncc" models/$model.nn -o "$tmp/make/$model.c"
  make -s -C "$tmp/make" -f "$repo/generated/Makefile" NNCC_ROOT="$repo" CC=gcc $model > /dev/null 2>&1
  c=$(since "$t0")
  t=$(first_step "$tmp/make.jsonl" "$tmp/make/$model" $train)
  printf "%-10s %-12s %10s %16s\n" $model make "$c" "$(echo "$t $c" | awk '{ printf "%.1f", $1 + $2 }')"
done
