#!/bin/sh
# run_cli.sh NNCC -- the driver's command line: usage errors, missing and
# unreadable files, atomic output.
set -u
nncc=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
expect() { # expect STATUS STDERR-SUBSTRING COMMAND...
  want=$1 msg=$2; shift 2
  "$@" > "$tmp/out" 2> "$tmp/err"
  rc=$?
  if [ $rc -ne "$want" ]; then
    echo "FAIL: '$*' exited $rc, want $want"; cat "$tmp/err"; fails=$((fails + 1)); return
  fi
  if [ -n "$msg" ] && ! grep -qF -- "$msg" "$tmp/err"; then
    echo "FAIL: '$*' stderr lacks: $msg"; cat "$tmp/err"; fails=$((fails + 1)); return
  fi
  passes=$((passes + 1))
}
expect 0 "" "$nncc" --help
grep -q "usage: nncc" "$tmp/out" || { echo "FAIL: --help prints no usage"; fails=$((fails + 1)); }
expect 0 "" "$nncc" --version
grep -q "^nncc [0-9]" "$tmp/out" || { echo "FAIL: --version"; fails=$((fails + 1)); }
expect 2 "unknown option '--frobnicate'" "$nncc" --frobnicate models/mnist_cnn.nn
expect 2 "no input file" "$nncc" --dump-ir
expect 2 "-o needs a file name" "$nncc" models/mnist_cnn.nn -o
expect 2 "unknown pass 'fuse2'" "$nncc" --dump-after=fuse2 models/mnist_cnn.nn
expect 2 "more than one input file" "$nncc" --dump-ir models/mnist_cnn.nn models/vgg16.nn
expect 2 "nothing to do" "$nncc" models/mnist_cnn.nn
expect 2 "exclusive" "$nncc" --dump-ir --dump-dot models/mnist_cnn.nn
expect 1 "nncc: error: cannot read 'no/such.nn': No such file or directory" "$nncc" --dump-ir no/such.nn
printf 'model x\n\0garbage' > "$tmp/bin.nn"
expect 1 "cannot read '$tmp/bin.nn'" "$nncc" --dump-ir "$tmp/bin.nn"
# -o writes the whole file or nothing
expect 0 "" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/ir.txt"
grep -q "parameters: 123,222" "$tmp/ir.txt" || { echo "FAIL: -o output"; fails=$((fails + 1)); }
expect 1 "cannot write '$tmp/nodir/ir.txt'" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/nodir/ir.txt"
expect 1 "error:" "$nncc" --dump-ir tests/errors/vgg16_28x28.nn -o "$tmp/bad.txt"
[ -e "$tmp/bad.txt" ] && { echo "FAIL: output written for a broken model"; fails=$((fails + 1)); }
[ -z "$(ls "$tmp" | grep '\.tmp\.')" ] || { echo "FAIL: temp file left behind"; fails=$((fails + 1)); }
echo "$passes passed, $fails failed"
[ $fails = 0 ]
