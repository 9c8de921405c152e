#!/bin/sh
# run_generated.sh NNCC -- generated/ holds, for every model in models/, the
# C that nncc emits now, and each of those files passes -Wall -Wextra
# -Werror with gcc and clang; so does the C of tests/compile/*.nn (graphs
# the shipped models don't cover).
set -u
nncc=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
for model in models/*.nn; do
  name=$(basename "$model" .nn)
  "$nncc" "$model" -o "$tmp/$name.c" || { status=1; continue; }
  if ! cmp -s "$tmp/$name.c" "generated/$name.c"; then
    echo "FAIL: generated/$name.c is stale: run scripts/update_generated.sh"
    status=1
  fi
  for cc in gcc clang; do
    $cc -std=c11 -D_POSIX_C_SOURCE=200809L -fsyntax-only -fopenmp -march=native -Wall -Wextra -Werror \
      -Iruntime "$tmp/$name.c" || { echo "FAIL: $cc warns on $name.c"; status=1; }
  done
done
for model in tests/compile/*.nn; do
  name=$(basename "$model" .nn)
  "$nncc" "$model" -o "$tmp/$name.c" || { status=1; continue; }
  for cc in gcc clang; do
    $cc -std=c11 -D_POSIX_C_SOURCE=200809L -fsyntax-only -fopenmp -march=native -Wall -Wextra -Werror \
      -Iruntime "$tmp/$name.c" || { echo "FAIL: $cc warns on $name.c"; status=1; }
  done
done
[ $status = 0 ] && echo "ok: generated/ is current and compiles cleanly"
exit $status
