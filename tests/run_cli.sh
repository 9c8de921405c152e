#!/bin/sh
# run_cli.sh NNCC -- the driver's command line: usage errors, missing and
# unreadable files, atomic output, special files (devices, FIFOs, symlinks)
# as output or source.
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
expect 1 "$tmp/bin.nn:2:1: error: NUL byte in the source (a .nn file is UTF-8 text)" "$nncc" --dump-ir "$tmp/bin.nn"
# -o writes the whole file or nothing
expect 0 "" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/ir.txt"
grep -q "parameters: 123,222" "$tmp/ir.txt" || { echo "FAIL: -o output"; fails=$((fails + 1)); }
expect 1 "cannot write '$tmp/nodir/ir.txt'" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/nodir/ir.txt"
expect 1 "error:" "$nncc" --dump-ir tests/errors/vgg16_28x28.nn -o "$tmp/bad.txt"
[ -e "$tmp/bad.txt" ] && { echo "FAIL: output written for a broken model"; fails=$((fails + 1)); }
[ -z "$(ls -A "$tmp" | grep 'tmp')" ] || { echo "FAIL: temp file left behind"; fails=$((fails + 1)); }
check() { # check DESCRIPTION TEST...: one more pass or fail
  what=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $what"; fails=$((fails + 1)); fi
}
# -o never replaces a special file (runtime/fileio.c): a character device
# is written through, a FIFO with a reader gets the output, one without
# fails at once; symlinks are followed.  As root (who could replace them)
# the devices are private copies of /dev/null and /dev/full, never those.
null=/dev/null full=/dev/full
mknod "$tmp/null" c 1 3 2> /dev/null && mknod "$tmp/full" c 1 7 && null=$tmp/null full=$tmp/full
expect 0 "" "$nncc" --dump-ir models/mnist_cnn.nn -o "$null"
check "-o replaced the character device $null" test -c "$null"
expect 1 "cannot write '$full': No space left on device" "$nncc" --dump-ir models/mnist_cnn.nn -o "$full"
check "-o replaced the character device $full" test -c "$full"
rm -f "$tmp/null" "$tmp/full"
mkfifo "$tmp/fifo"
exec 3<> "$tmp/fifo" # a reader before nncc opens it; the IR fits the pipe's buffer
expect 0 "" timeout 20 "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/fifo"
timeout 10 head -c "$(wc -c < "$tmp/ir.txt")" <&3 > "$tmp/from_fifo"
exec 3<&-
check "a FIFO's reader got other bytes than -o FILE wrote" cmp -s "$tmp/from_fifo" "$tmp/ir.txt"
expect 1 "cannot write '$tmp/fifo': FIFO has no reader" timeout 20 "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/fifo"
check "-o replaced a FIFO" test -p "$tmp/fifo"
printf old > "$tmp/real.txt"
ln -s real.txt "$tmp/link.txt"
expect 0 "" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/link.txt"
check "-o replaced a symlink" test -L "$tmp/link.txt"
check "-o did not write a symlink's target" cmp -s "$tmp/real.txt" "$tmp/ir.txt"
mkdir "$tmp/dir.txt"
expect 1 "cannot write '$tmp/dir.txt': Is a directory" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/dir.txt"
# -o /dev/stdout into a redirected file writes through the shell's open
# file (appending after what is there), never renames over that file
printf 'before\n' > "$tmp/all.txt"
"$nncc" --dump-ir models/mnist_cnn.nn -o /dev/stdout >> "$tmp/all.txt"
{ printf 'before\n'; cat "$tmp/ir.txt"; } > "$tmp/want.txt"
check "-o /dev/stdout >> FILE lost FILE's contents" cmp -s "$tmp/all.txt" "$tmp/want.txt"
# a temp file of a writer that was killed is removed by the next write
printf stale > "$tmp/.ir.txt.nncc-tmp.999999999"
expect 0 "" "$nncc" --dump-ir models/mnist_cnn.nn -o "$tmp/ir.txt"
check "a stale temp file was left" test ! -e "$tmp/.ir.txt.nncc-tmp.999999999"
# Sources: a FIFO (or device) as the model or an import is refused at once.
expect 1 "nncc: error: cannot read '$tmp/fifo': not a regular file" timeout 20 "$nncc" --dump-ir "$tmp/fifo"
expect 1 "cannot read '/dev/zero': not a regular file" timeout 20 "$nncc" --dump-ir /dev/zero
mkfifo "$tmp/lib.nn"
printf 'import "lib.nn"\n' > "$tmp/imports.nn"
expect 1 "$tmp/imports.nn:1:8: error: cannot import '$tmp/lib.nn': not a regular file" \
  timeout 20 "$nncc" --dump-ir "$tmp/imports.nn"
# No command writes over a file it reads, by any name (gcc's "input file
# is the same as output file"): the file stays as it was, status 2.
cp models/lenet5.nn "$tmp/m.nn"
cp tests/onnx/mnist_cnn.onnx "$tmp/m.onnx"
ln -s m.nn "$tmp/alias.nn"
expect 2 "-o '$tmp/m.nn' is also the model file; nothing was written" "$nncc" "$tmp/m.nn" -o "$tmp/m.nn"
expect 2 "is also the model file" "$nncc" --dump-ir "$tmp/m.nn" -o "$tmp/alias.nn"
expect 2 "is also the model file" "$nncc" --dump-dot "$tmp/m.nn" -o "$tmp/./m.nn"
cp "$tmp/m.nn" "$tmp/lenet5"
expect 2 "the trainer 'lenet5' is also the model file" sh -c 'cd "$1" && "$2" build lenet5' sh "$tmp" "$nncc"
expect 2 "-o '$tmp/m.nn' is also the model file" "$nncc" export "$tmp/m.nn" --load "$tmp/ck" -o "$tmp/m.nn"
expect 2 "-o '$tmp/m.onnx' is also the ONNX file" "$nncc" import "$tmp/m.onnx" -o "$tmp/m.onnx"
expect 2 "--weights '$tmp/m.onnx' is also the ONNX file" "$nncc" import "$tmp/m.onnx" --weights "$tmp/m.onnx"
expect 2 "-o '$tmp/w.nn' is also the --weights output" "$nncc" import "$tmp/m.onnx" -o "$tmp/w.nn" --weights "$tmp/w.nn"
expect 2 "--infer-weights '$tmp/p.h' is also the header" \
  "$nncc" --infer "$tmp/m.nn" --load "$tmp/ck" -o "$tmp/p.c" --infer-weights "$tmp/p.h"
expect 2 "--infer-weights '$tmp/m.nn' is also the model file" \
  "$nncc" --infer "$tmp/m.nn" --load "$tmp/ck" -o "$tmp/p.c" --infer-weights "$tmp/m.nn"
check "a refused output changed the model" cmp -s "$tmp/m.nn" models/lenet5.nn
check "a refused output changed the ONNX file" cmp -s "$tmp/m.onnx" tests/onnx/mnist_cnn.onnx
check "a refused command wrote something" test ! -e "$tmp/w.nn" -a ! -e "$tmp/p.c" -a ! -e "$tmp/p.h"
expect 0 "" "$nncc" import "$tmp/m.onnx" -o /dev/null --weights /dev/null # a device twice is fine
[ -z "$(ls -A "$tmp" | grep 'tmp')" ] || { echo "FAIL: temp file left behind"; fails=$((fails + 1)); }
echo "$passes passed, $fails failed"
[ $fails = 0 ]
