#!/bin/sh
# run_fuzz.sh [--fresh] BIN NAME SECONDS WORKDIR [LIBFUZZER FLAGS...]
# Runs the fuzzer BIN (tests/fuzz/fuzz_NAME.c: front, idx, ckpt or onnx) for
# SECONDS on its seeds and dictionary (tests/fuzz/NAME.dict), with the
# suite's limits: 1 s per input, 512 MB of memory, leaks are errors.
# In WORKDIR: corpus/ (the grown corpus, kept between runs), artifacts/
# (crash-, leak-, timeout- and oom- reproducers; rerun one with `BIN FILE`),
# seeds/ (copied from the tree each run), tmp/ (the harness's scratch
# files) and log; --fresh empties corpus/ and artifacts/ first.  Prints the
# log, then a summary line "fuzz NAME: ..."; exits non-zero if the fuzzer
# found anything.
set -u
fresh=0
if [ "${1:-}" = --fresh ]; then fresh=1; shift; fi
[ $# -ge 4 ] || { echo "usage: $0 [--fresh] BIN NAME SECONDS WORKDIR [FLAGS...]" >&2; exit 2; }
bin=$1 name=$2 secs=$3 work=$4
shift 4
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$bin" ] || { echo "run_fuzz.sh: no fuzzer $bin" >&2; exit 2; }

[ $fresh = 1 ] && rm -rf "$work/corpus" "$work/artifacts"
rm -rf "$work/seeds" "$work/tmp"
mkdir -p "$work/corpus" "$work/seeds" "$work/artifacts" "$work/tmp" || exit 2
quiet=
case $name in
  front) # every model in the tree, broken ones included, named after their directory
    for f in "$root"/models/*.nn "$root"/models/lib/*.nn "$root"/tests/*/*.nn; do
      d=$(basename "$(dirname "$f")")
      cp "$f" "$work/seeds/${d}_$(basename "$f")" || exit 2
    done ;;
  onnx) # tests/onnx's files up to 300 KB (the bigger ones only slow the mutations down)
    for f in "$root"/tests/onnx/*.onnx; do
      [ "$(wc -c < "$f")" -le 300000 ] && { cp "$f" "$work/seeds/" || exit 2; }
    done ;;
  idx|ckpt) # the runtime reports every rejected file on stderr: keep libFuzzer's output only
    cp "$root"/tests/fuzz/seeds/"$name"/* "$work/seeds/" || exit 2
    quiet=-close_fd_mask=2 ;;
  *) echo "run_fuzz.sh: unknown fuzzer '$name'" >&2; exit 2 ;;
esac

# ASan's quarantine of freed memory (256 MB by default) would count against
# the 512 MB limit: a smaller one keeps the limit about the inputs.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=64
export ASAN_OPTIONS
TMPDIR=$work/tmp "$bin" -max_total_time="$secs" -timeout=1 -rss_limit_mb=512 -detect_leaks=1 \
  -dict="$root/tests/fuzz/$name.dict" -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
  $quiet "$@" "$work/corpus" "$work/seeds" > "$work/log" 2>&1
rc=$?
cat "$work/log"

# Executions from the log ("stat::number_of_executed_units: N", or the last
# status line "#N ..." in fork mode); coverage from one pass over the corpus
# ("INITED cov: C ft: F corp: K/..."), the same measure in either mode.
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
[ -n "$execs" ] || execs=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 | sed 's/^#\([0-9]*\).*/\1/')
cov=$(TMPDIR=$work/tmp "$bin" -runs=0 -timeout=1 -rss_limit_mb=512 -artifact_prefix="$work/tmp/" $quiet \
  "$work/corpus" "$work/seeds" 2>&1 |
  sed -n 's/.*INITED cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1 edges, ft \2 features, corpus \3 inputs/p')
found=$(ls "$work/artifacts" | wc -l)
echo "fuzz $name: ${execs:-?} execs in $secs s; ${cov:-coverage unknown}; $found reproducer(s) in $work/artifacts"
if [ $rc -ne 0 ]; then
  echo "FAIL: fuzz $name: libFuzzer exited with $rc; reproduce with: $bin FILE" \
    "(FILE: the artifact named in the log above)"
  exit 1
fi
