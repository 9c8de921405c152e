#!/bin/sh
# run_golden.sh NNCC MODEL.nn -- compare the IR dump after every pass, and
# the DOT dump, with tests/golden/; scripts/update_golden.sh rewrites them.
set -u
nncc=$1 model=$2
name=$(basename "$model" .nn)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
check() { # check GOLDEN-FILE COMMAND...
  golden=$1; shift
  if ! "$@" > "$tmp/out" 2> "$tmp/err"; then
    echo "FAIL: '$*' exited non-zero:"; cat "$tmp/err"; status=1; return
  fi
  if ! diff -u "$golden" "$tmp/out"; then
    echo "FAIL: '$*' differs from $golden (scripts/update_golden.sh regenerates it)"; status=1
  fi
}
# the passes, listed here (not taken from --help, where a changed line
# would silently test nothing); each golden file must exist
for pass in parse shape fuse plan; do
  [ -f "tests/golden/$name.$pass.ir" ] || { echo "FAIL: tests/golden/$name.$pass.ir is missing"; status=1; continue; }
  check "tests/golden/$name.$pass.ir" "$nncc" --dump-after="$pass" "$model"
done
[ -f "tests/golden/$name.dot" ] || { echo "FAIL: tests/golden/$name.dot is missing"; status=1; }
check "tests/golden/$name.dot" "$nncc" --dump-dot "$model"
# the dump must be deterministic: a second run gives the same bytes
"$nncc" --dump-ir "$model" > "$tmp/a" && "$nncc" --dump-ir "$model" > "$tmp/b" && cmp -s "$tmp/a" "$tmp/b" ||
  { echo "FAIL: two dumps of $model differ"; status=1; }
[ $status = 0 ] && echo "ok: $model"
exit $status
