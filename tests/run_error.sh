#!/bin/sh
# run_error.sh NNCC BROKEN.nn -- the file's "# expect:" lines give the exact
# diagnostic lines nncc must print (in order, "error:" and "note:" lines,
# without the source excerpts); nncc must exit 1 and write no output file.
set -u
nncc=$1 file=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
sed -n 's/^# expect: //p' "$file" > "$tmp/want"
if [ ! -s "$tmp/want" ]; then echo "FAIL: $file has no '# expect:' line"; exit 1; fi
"$nncc" "$file" -o "$tmp/out.c" 2> "$tmp/err" > /dev/null
rc=$?
# keep the diagnostic lines, drop the source line and caret excerpts
grep -v '^ *[0-9]* |' "$tmp/err" | grep -v '^ *|' > "$tmp/got"
status=0
if [ $rc -ne 1 ]; then echo "FAIL: exit status $rc, want 1"; status=1; fi
if [ -e "$tmp/out.c" ] || ls "$tmp"/out.c.* > /dev/null 2>&1; then echo "FAIL: an output file was written"; status=1; fi
if ! diff -u "$tmp/want" "$tmp/got"; then echo "FAIL: diagnostics differ"; cat "$tmp/err"; status=1; fi
# every error line shows the source line and a caret
if grep -q ': error: ' "$tmp/err" && grep -q '^[^ ]*:[0-9]*:[0-9]*: error' "$tmp/err" && ! grep -q '^ *| *^' "$tmp/err"; then
  echo "FAIL: no caret line"; status=1
fi
[ $status = 0 ] && echo "ok: $file"
exit $status
