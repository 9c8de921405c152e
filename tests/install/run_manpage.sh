#!/bin/sh
# run_manpage.sh NNCC -- docs/nncc.1 and `nncc --help` describe the same
# nncc: every option, command and environment variable of --help is in the
# manual page, every option of the page's OPTIONS section is in --help, and
# the page's version is nncc's.
set -u
nncc=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$nncc" --help > "$tmp/help" || fail "nncc --help"
# the page as plain text: roff's \- is -, font changes go
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\e/\\/g' docs/nncc.1 > "$tmp/page"
# options: -o, -O0, --dump-after=, ...; commands; environment variables
grep -o -- '--*[A-Za-z][-A-Za-z0-9]*=\{0,1\}' "$tmp/help" | sort -u > "$tmp/opts"
[ "$(wc -l < "$tmp/opts")" -ge 8 ] || fail "found only $(wc -l < "$tmp/opts") options in --help"
while read -r o; do
  case $o in -std=|-fopenmp|-ffp-contract=|-march=|-O3) continue ;; esac
  grep -q -- "$o" "$tmp/page" || fail "option $o of --help is not in docs/nncc.1"
done < "$tmp/opts"
for w in build run train eval grads CC CFLAGS NNCC_NO_JIT NNCC_NO_CACHE NNCC_CACHE_DIR TMPDIR; do
  grep -q "$w" "$tmp/help" || fail "--help no longer mentions $w: update this test and the page"
  grep -q "$w" "$tmp/page" || fail "$w of --help is not in docs/nncc.1"
done
# the page's OPTIONS section, .TP items, against --help
sed -n '/^\.SH OPTIONS/,/^\.SH /p' docs/nncc.1 | grep -A1 '^\.TP' | grep '^\.B' |
  sed -e 's/\\-/-/g' -e 's/^\.B[IR]* *//' -e 's/[ "].*//' -e 's/=.*/=/' > "$tmp/page_opts"
[ -s "$tmp/page_opts" ] || fail "no options found in docs/nncc.1"
while read -r o; do
  grep -q -- "$o" "$tmp/help" || fail "option $o of docs/nncc.1 is not in --help"
done < "$tmp/page_opts"
v=$("$nncc" --version | sed -n 's/^nncc \([0-9.]*\).*/\1/p')
grep -q "^\.TH NNCC 1 .*\"nncc $v\"" docs/nncc.1 || fail "docs/nncc.1 is not of nncc $v"
echo "ok: docs/nncc.1 matches nncc --help ($(wc -l < "$tmp/opts") options)"
