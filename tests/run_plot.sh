#!/bin/sh
# run_plot.sh NNCC -- `nncc plot` (runtime/plot.c, gnuplot): logs written
# here by hand, one run per file, both kinds of line.
#  - the PNG is a 1500x460 picture, written atomically
#  - errors in one line: a missing file, a line of neither kind, no -o, no
#    gnuplot on PATH, a gnuplot that fails (the old picture stays), an
#    unwritable target; no temporary directory is left behind
set -u
nncc=$1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp/t"
mkdir "$TMPDIR"
fail() { echo "FAIL: $*"; exit 1; }
run() { # run NAME EXPECTED_STATUS CMD...
  name=$1 want=$2; shift 2
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
  got=$?
  [ "$got" = "$want" ] || { cat "$tmp/$name.out" "$tmp/$name.err"; fail "$name: exit $got, want $want"; }
}
says() { [ "$(cat "$tmp/$1.err")" = "$2" ] || { cat "$tmp/$1.err"; fail "$1: want '$2'"; }; }
for i in 1 2 3 4 5 6; do
  echo "{\"step\":$i,\"epoch\":$(( (i + 2) / 3 )),\"loss\":$(echo "2.3 / $i" | bc -l | cut -c1-6)}"
done > "$tmp/a.jsonl"
cat > "$tmp/b.jsonl" << 'LOG'
{"epoch":1,"steps":3,"loss":2.1,"val_loss":2.2,"val_acc":0.3,"test_loss":2.0,"test_acc":0.31,"img_per_s":100.0,"seconds":1.0}
{"epoch":2,"steps":6,"loss":1.5,"val_loss":1.7,"val_acc":0.5,"test_loss":1.6,"test_acc":0.52,"img_per_s":100.0,"seconds":1.0}
{"step":7,"epoch":3,"loss":null}
{"epoch": 3, "loss": 1.2, "test_acc": 0.6}
LOG
run ok 0 "$nncc" plot -o "$tmp/c.png" "$tmp/a.jsonl" "$tmp/b.jsonl"
[ "$(head -c 4 "$tmp/c.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "not a PNG"
[ "$(od -An -tx1 -j16 -N8 "$tmp/c.png" | tr -d ' \n')" = "000005dc000001cc" ] || fail "not 1500x460"
[ -s "$tmp/ok.err" ] && { cat "$tmp/ok.err"; fail "plot printed something"; }

# errors
run missing 1 "$nncc" plot -o "$tmp/x.png" "$tmp/none.jsonl"
says missing "nncc: plot: $tmp/none.jsonl: No such file or directory"
printf '{"step":1,"epoch":1,"loss":2}\nhello\n' > "$tmp/bad.jsonl"
run bad 1 "$nncc" plot -o "$tmp/x.png" "$tmp/bad.jsonl"
says bad "nncc: plot: $tmp/bad.jsonl:2: neither a --log nor a --step-log line"
: > "$tmp/empty.jsonl"
run empty 1 "$nncc" plot -o "$tmp/x.png" "$tmp/empty.jsonl"
says empty "nncc: plot: $tmp/empty.jsonl: no --log or --step-log lines"
cp "$tmp/a.jsonl" "$tmp/a.keep"
run clobber 2 "$nncc" plot -o "$tmp/a.jsonl" "$tmp/b.jsonl" "$tmp/a.jsonl"
says clobber "nncc: error: -o '$tmp/a.jsonl' is also a log to plot; nothing was written"
cmp -s "$tmp/a.jsonl" "$tmp/a.keep" || fail "plot -o over a log changed it"
run noout 2 "$nncc" plot "$tmp/a.jsonl"
grep -q "plot needs -o OUT.png" "$tmp/noout.err" || fail "no -o: unclear"
run nofile 2 "$nncc" plot -o "$tmp/x.png"
grep -q "plot needs at least one --log or --step-log file" "$tmp/nofile.err" || fail "no file: unclear"
[ -e "$tmp/x.png" ] && fail "a failed plot wrote its output"
run nognuplot 1 env PATH=/nonexistent "$nncc" plot -o "$tmp/c.png" "$tmp/a.jsonl"
says nognuplot "nncc: plot: gnuplot is not installed (Debian: apt-get install gnuplot-nox)"
mkdir "$tmp/bin"
printf '#!/bin/sh\necho "line 0: unknown terminal" >&2\nexit 1\n' > "$tmp/bin/gnuplot"
chmod +x "$tmp/bin/gnuplot"
cp "$tmp/c.png" "$tmp/old.png"
run badgnuplot 1 env PATH="$tmp/bin:$PATH" "$nncc" plot -o "$tmp/c.png" "$tmp/a.jsonl"
says badgnuplot "nncc: plot: gnuplot failed: line 0: unknown terminal"
cmp -s "$tmp/c.png" "$tmp/old.png" || fail "a failed gnuplot changed the old picture"
run nodir 1 "$nncc" plot -o "$tmp/no/such/c.png" "$tmp/a.jsonl"
grep -q "^nncc: plot: $tmp/no/such/c.png: cannot write: " "$tmp/nodir.err" || { cat "$tmp/nodir.err"; fail "no dir: unclear"; }
[ -z "$(ls "$TMPDIR")" ] || { ls "$TMPDIR"; fail "temporary files left behind"; }
echo "ok: nncc plot draws 1500x460 PNGs and reports every error in one line"
