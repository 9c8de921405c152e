#!/bin/sh
# run_cache.sh NNCC MKIDX -- nncc run's cache of compiled objects
# (docs/jit.md), on the JIT when this nncc has one and on the cc fallback:
#  - the first run compiles every unit, the second none ("from the cache"),
#    a new model only its own unit; every run gives the same step losses
#    and checkpoint
#  - entries: one per unit, 0600 in a 0700 directory, no temporary files
#  - a damaged entry (bit flip, truncated, another key's, a symlink) is
#    named, removed, compiled again, and the run gives the same bits
#  - --no-cache and NNCC_NO_CACHE=1 neither read nor write the cache
#  - two runs racing on an empty cache both succeed, with whole entries
#  - a cache directory others can write to, or one that cannot be made,
#    is not used (one line) and the run goes on
set -u
nncc=$1 mkidx=$2
tmp=$(mktemp -d) || exit 1
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() { # run NAME EXPECTED_STATUS CMD...: stdout to $tmp/NAME.out, stderr .err
  name=$1 want=$2; shift 2
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
  got=$?
  [ "$got" = "$want" ] || { cat "$tmp/$name.out" "$tmp/$name.err"; fail "$name: exit $got, want $want: $*"; }
}
says() { # says NAME PATTERN: NAME's stderr has a line matching PATTERN
  grep -q "$2" "$tmp/$1.err" || { cat "$tmp/$1.err"; fail "$1: no line matching '$2'"; }
}
mkdir "$tmp/data"
"$mkidx" "$tmp/data" 256 32 > /dev/null || fail mkidx
train="train --data $tmp/data --steps 2 --seed 3 --threads 2"
# Small models: the time is the runtime's and the checks', not the kernels'.
model=tests/jit/tiny.nn first="$tmp/tiny2.nn"
cat > "$first" << 'EOF'
input x: f32[8, 1, 28, 28] = mnist
label y: class[8] of 10
logits = linear(relu(linear(flatten(x), 16)), 10)
loss = cross_entropy(logits, y)
EOF
units=$(( $(ls runtime/*.c | wc -l) + 1 ))
entries() { ls "$1" | grep -c '^[0-9a-f]\{32\}\.o$'; }

run probe 1 env NNCC_JIT_INJECT_ERROR=1 NNCC_NO_CACHE=1 "$nncc" run $model train
if grep -q "nncc: run: compiling in memory failed" "$tmp/probe.err"; then
  paths="jit cc"
else
  paths="cc"
fi

for path in $paths; do
  c="$tmp/cache-$path"
  if [ $path = jit ]; then
    flag="" compiled="compiled in-process with clang [0-9.]* (JIT) in [0-9.]* s"
    cached="^nncc: run: loaded from the cache in-process with clang [0-9.]* (JIT) in [0-9.]* s$"
  else
    flag="--no-jit" compiled="; compiled with cc in [0-9.]* s"
    cached="; linked with cc from the cache in [0-9.]* s$"
  fi
  r() { # r NAME MODEL [env...]: train MODEL (a path) with cache $c
    n=$1 m=$2; shift 2
    run $path-$n 0 env NNCC_CACHE_DIR="$c" "$@" "$nncc" run $flag $m $train \
      --step-log "$tmp/$path-$n.jsonl" --save "$tmp/$path-$n.st"
  }
  same() { # same A B: step losses and checkpoints of runs A and B are equal
    cmp -s "$tmp/$path-$1.jsonl" "$tmp/$path-$2.jsonl" || fail "$path: $2's step losses differ from $1's"
    cmp -s "$tmp/$path-$1.st" "$tmp/$path-$2.st" || fail "$path: $2's checkpoint differs from $1's"
  }

  # cold (another model), then the model on the cached runtime, then the
  # model cached
  r cold $first
  says $path-cold "$compiled\$"
  [ "$(entries "$c")" = $units ] || fail "$path: $(entries "$c") cache entries, want $units"
  [ "$(stat -c %a "$c")" = 700 ] || fail "$path: cache directory mode $(stat -c %a "$c")"
  for e in "$c"/*.o; do [ "$(stat -c %a "$e")" = 600 ] || fail "$path: $e has mode $(stat -c %a "$e")"; done
  ls "$c" > "$tmp/before"
  r new $model
  says $path-new "$compiled ($((units - 1)) of $units units from the cache)\$"
  [ "$(entries "$c")" = $((units + 1)) ] || fail "$path: a new model added $(($(entries "$c") - units)) entries"
  big="$c/$(ls "$c" | grep -v -x -F -f "$tmp/before")" # the model's entry
  r warm $model
  says $path-warm "$cached"
  same new warm

  # the model's entry, damaged four ways; each is compiled again and the
  # bits stay
  printf '\001' | dd of="$big" bs=1 seek=100 conv=notrunc 2> /dev/null
  r flip $model
  says $path-flip "^nncc: run: cache entry '$big' is damaged (its checksum is wrong); compiling it again\$"
  says $path-flip "$compiled ($((units - 1)) of $units units from the cache)\$"
  same new flip
  truncate -s 50 "$big"
  r short $model
  says $path-short "^nncc: run: cache entry '$big' is damaged (its length is wrong); compiling it again\$"
  same new short
  cp "$c/$(head -1 "$tmp/before")" "$big"
  r swapped $model
  says $path-swapped "^nncc: run: cache entry '$big' is damaged (it is another key's entry); compiling it again\$"
  same new swapped
  echo "precious" > "$tmp/target"
  rm "$big" && ln -s "$tmp/target" "$big"
  r link $model
  says $path-link "^nncc: run: cache entry '$big' is damaged (.*); compiling it again\$"
  same new link
  [ "$(cat "$tmp/target")" = precious ] || fail "$path: the symlink's target changed"
  r again $model
  says $path-again "$cached"
  same new again

  # --no-cache and NNCC_NO_CACHE=1: no reading, no writing
  r nocache $model NNCC_NO_CACHE=1
  says $path-nocache "$compiled\$"
  same new nocache
  run $path-nocache2 0 env NNCC_CACHE_DIR="$tmp/never-$path" "$nncc" run $flag --no-cache $model $train
  [ -e "$tmp/never-$path" ] && fail "$path: --no-cache created the cache"
  says $path-nocache2 "$compiled\$"

  # two runs racing on an empty cache
  rm -rf "$c"
  r race1 $model &
  p1=$!
  r race2 $model
  wait $p1 || fail "$path: the first of two racing runs failed"
  same new race1
  same new race2
  [ "$(entries "$c")" = $units ] || fail "$path: $(entries "$c") entries after a race, want $units"
  ls -a "$c" | grep -q '^\.tmp-' && fail "$path: temporary files left in the cache"
  r after $model
  says $path-after "$cached"
  same new after

  # directories that must not be used
  chmod 777 "$c"
  r open $model
  says $path-open "^nncc: run: not caching: '$c' is writable by others\$"
  says $path-open "$compiled\$"
  same new open
  chmod 700 "$c"
  touch "$tmp/file"
  run $path-notdir 0 env NNCC_CACHE_DIR="$tmp/file/cache" "$nncc" run $flag $model $train
  says $path-notdir "^nncc: run: not caching: cannot create '$tmp/file/cache': Not a directory\$"
  echo "ok: $path: cold, cached, a new model, damaged entries, --no-cache, a race, unusable directories"
done

run usage 2 "$nncc" run --no-such $model train
says usage "unknown run option '--no-such'"
echo "ok: nncc run's cache ($paths)"
