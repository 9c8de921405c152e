#!/usr/bin/env bash
# train.sh -- end-to-end training throughput and peak memory: the trainer
# nncc generates versus PyTorch 1.13 on the same architecture, the same
# MNIST IDX files and the same thread count.  Not a test: timings never go
# in tests.
#
# usage: bench/train.sh [--threads T] [--models "mnist_cnn vgg16"]
#                       [--mnist_cnn W,N] [--vgg16 W,N] [--isa ISA] [--peak GFLOPS]
#                       [--repeat R] [--perf] [--no-json]
#   W,N    warm-up steps, then measured steps (N is rounded up to a multiple
#          of W); defaults mnist_cnn 10,50 and vgg16 2,8
#   --repeat R  run each side R times (default 3), alternating nncc and
#          PyTorch; the table shows each side's median run, and every run's
#          figure is printed below it (PyTorch's speed on one machine moved
#          by up to 20% between runs, two modes)
#   --isa  native (default: all the CPU has), avx2 (nncc built with
#          -march=x86-64-v3, PyTorch's oneDNN capped with
#          ONEDNN_MAX_CPU_ISA=AVX2, the peak measured with AVX2), or
#          generic (-march=x86-64: nncc_simd.h's vector-extension path;
#          oneDNN capped at SSE4.1)
#   --peak the peak in GFLOP/s for the "%peak" columns; default: the FMA
#          peak bench/peak_fma.c measures for that ISA on T threads
#   --perf also profile each nncc trainer (perf, DWARF call graphs) and
#          print its step split: forward / backward / the costliest kernels
#   --O0   also time the trainer nncc -O0 generates (no fusion, no memory
#          plan): the passes' effect on speed and peak memory
#   --torch-malloc keep (default) runs PyTorch with glibc told to keep
#          freed memory (MALLOC_MMAP_THRESHOLD_, _TRIM_THRESHOLD_), as a
#          tuned PyTorch install (jemalloc, tcmalloc) does; `default` leaves
#          glibc returning each step's big tensors to the kernel and faulting
#          them in again, about 2x slower and erratic (earlier results)
#
# How the nncc trainer is timed.  A --steps run logs no timing, so each
# model trains on a subset of MNIST whose epoch is exactly W steps: epoch 1
# is the warm-up, epochs 2.. are measured by the trainer itself (the
# img_per_s/seconds of its --log, which cover training only: no start-up,
# no evaluation).  The test set is one batch, so the evaluation after each
# epoch is short.  PyTorch (bench/torch_train.py) reads the same subset
# files, preloads them as uint8 like the runtime, and times the same N
# steps after the same W warm-up steps in-process.  Peak RSS is GNU time's
# maximum resident set size of each process (both therefore exclude the
# 55 MB a full MNIST would add to each side).
#
# Everything built goes to ${TMPDIR:-/tmp}/nncc_bench_train; the results
# are also written to bench/results/train-<date>.json.
# (The help above is lines 2-45.)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/tmp}/nncc_bench_train
py=/usr/bin/python3 # Debian's, with PyTorch 1.13 (not the pyenv one)
nncc=${NNCC:-$root/build/gcc/nncc}
threads=2 models="mnist_cnn vgg16" peak=0 perf=0 json=1 o0=0 isa=native torch_malloc=keep repeat=3
declare -A counts=([mnist_cnn]=10,50 [vgg16]=2,8)
declare -A batch=([mnist_cnn]=256 [vgg16]=64)

die() { echo "train.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift ;;
    --models) models=$2; shift ;;
    --mnist_cnn | --vgg16) counts[${1#--}]=$2; shift ;;
    --peak) peak=$2; shift ;;
    --isa) isa=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --perf) perf=1 ;;
    --O0) o0=1 ;;
    --no-json) json=0 ;;
    --torch-malloc) torch_malloc=$2; shift ;;
    -h | --help) sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
case $repeat in '' | *[!0-9]* | 0*) die "--repeat: a positive count, not '$repeat'" ;; esac
# PyTorch's allocator (--torch-malloc): glibc's largest mmap threshold
# (32 MiB on 64-bit), no trimming, 512 MiB of slack on each heap growth
case $torch_malloc in
  keep) torch_env=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
                   MALLOC_TOP_PAD_=536870912) ;;
  default) torch_env=(NNCC_BENCH_TORCH_MALLOC=default) ;;
  *) die "--torch-malloc: 'keep' or 'default', not '$torch_malloc'" ;;
esac

. "$root/bench/isa.sh"
bench_isa "$isa" || exit 2
optflags="-O3 -march=$march"

# ---- prerequisites ----
if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y time >/dev/null
  else die "GNU time is missing: apt-get install -y time"; fi
fi
$py -c 'import torch, numpy' 2>/dev/null || die "$py cannot import torch and numpy"
[ -f "$root/data/mnist/train-images-idx3-ubyte" ] || bash "$root/scripts/fetch_mnist.sh"
if [ -z "${NNCC:-}" ]; then # keep build/gcc/nncc current (nncc alone, not the tests)
  [ -f "$root/build/gcc/CMakeCache.txt" ] ||
    cmake -S "$root" -B "$root/build/gcc" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$root/build/gcc" --target nncc -j2 >/dev/null
fi
mkdir -p "$out"

# cpustat: busy (user, nice, system, irq, softirq) and steal jiffies of the
# whole machine, to tell how much CPU others used while a trainer ran.
cpustat() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
# timed FILE CMD...: run CMD under GNU time; FILE gets "rss_kib wall user sys"
# then the machine's busy and steal jiffies before and after.
timed() {
  local f=$1 b0 s0 b1 s1
  shift
  read -r b0 s0 < <(cpustat)
  /usr/bin/time -f "%M %e %U %S" -o "$f" "$@"
  read -r b1 s1 < <(cpustat)
  echo "$b0 $b1 $s0 $s1" >>"$f"
}
read -r b0 s0 < <(cpustat); sleep 1; read -r b1 s1 < <(cpustat)
busy=$(awk -v b=$((b1 - b0)) -v hz="$hz" -v n="$(nproc)" 'BEGIN { printf "%.2f", b / hz / n }')
echo "train.sh: $threads threads, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), busy before start $busy"
awk -v b="$busy" 'BEGIN { exit !(b > 0.1) }' &&
  echo "train.sh: warning: the machine is already busy ($busy of its CPUs): timings will be pessimistic"

export OMP_NUM_THREADS=$threads
bench_peak "$root" "$out"
echo "train.sh: ISA $isa: nncc built with $optflags${ONEDNN_MAX_CPU_ISA:+, ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA}"
for m in $models; do
  [ -n "${batch[$m]:-}" ] || die "unknown model '$m' (mnist_cnn, vgg16)"
  IFS=, read -r warm steps <<<"${counts[$m]}"
  epochs=$(( 1 + (steps + warm - 1) / warm )) # epoch 1: warm-up; the rest: measured
  steps=$(( (epochs - 1) * warm ))
  b=${batch[$m]}
  echo "train.sh: $m: build; warm-up $warm steps, measure $steps steps (batch $b)" >&2
  "$nncc" "$root/models/$m.nn" -o "$out/$m.c"
  make -s -B -C "$out" -f "$root/generated/Makefile" NNCC_ROOT="$root" OPTFLAGS="$optflags" "$m" >/dev/null
  "$nncc" --dump-ir "$root/models/$m.nn" |
    sed -n 's/^; training step FLOPs[^:]*: \([0-9,]*\).*/\1/p' | tr -d , >"$out/$m.flops"
  bench_subset "$root/data/mnist" "$out/data_$m" $(( warm * b )) "$b"

  rm -f "$out/$m".nncc.*.jsonl "$out/$m".nncc.*.time "$out/$m".torch.*.json "$out/$m".torch.*.time
  for r in $(seq "$repeat"); do
    echo "train.sh: $m: nncc, run $r of $repeat" >&2
    timed "$out/$m.nncc.$r.time" "$out/$m" train --data "$out/data_$m" \
      --epochs "$epochs" --threads "$threads" --log "$out/$m.nncc.$r.jsonl" --quiet
    echo "train.sh: $m: torch, run $r of $repeat" >&2
    timed "$out/$m.torch.$r.time" env "${torch_env[@]}" $py "$root/bench/torch_train.py" "$m" \
      --data "$out/data_$m" --threads "$threads" --warmup "$warm" --steps "$steps" >"$out/$m.torch.$r.json"
  done
  if [ "$o0" = 1 ]; then
    echo "train.sh: $m: nncc -O0" >&2
    mkdir -p "$out/O0"
    "$nncc" -O0 "$root/models/$m.nn" -o "$out/O0/$m.c"
    make -s -B -C "$out/O0" -f "$root/generated/Makefile" NNCC_ROOT="$root" OPTFLAGS="$optflags" "$m" >/dev/null
    rm -f "$out/$m.nncc_O0.jsonl"
    timed "$out/$m.nncc_O0.time" "$out/O0/$m" train --data "$out/data_$m" \
      --epochs "$epochs" --threads "$threads" --log "$out/$m.nncc_O0.jsonl" --quiet
  fi
done

# ---- the table (and JSON) ----
stamp=$(date +%Y%m%d-%H%M%S)
results=
[ "$json" = 1 ] && mkdir -p "$root/bench/results" && results=$root/bench/results/train-$stamp.json
TORCH_MALLOC=$torch_malloc $py - "$out" "$threads" "$peak" "$hz" "$results" "$(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')" "$isa" "$repeat" $models <<'PY'
import json, os, statistics, sys
out, threads, peak, hz, results, commit, isa, repeat, models = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8]), sys.argv[9:]

def timed(path):
    """GNU time's numbers, and the CPU others used meanwhile (in CPUs)."""
    (rss, wall, user, sys_), (b0, b1, s0, s1) = (l.split() for l in open(path).read().split("\n")[-3:-1])
    wall = float(wall)
    others = max(0.0, (int(b1) - int(b0)) / hz - float(user) - float(sys_)) / wall
    return {"peak_rss_mib": int(rss) / 1024, "wall_s": wall, "others_cpus": others,
            "steal_cpus": (int(s1) - int(s0)) / hz / wall}

fma_text = open(os.path.join(out, "peak_fma.txt")).read().split()
fma, fma_isa = float(fma_text[0]), fma_text[1]
measured_peak = peak == 0
if measured_peak:
    peak = fma
rows = []
for m in models:
    p = lambda ext: os.path.join(out, f"{m}.{ext}")
    nruns, truns = [], []
    for k in range(1, repeat + 1):
        epochs = [json.loads(l) for l in open(p(f"nncc.{k}.jsonl"))][1:]  # epoch 1 is the warm-up
        imgs = sum(e["img_per_s"] * e["seconds"] for e in epochs)
        secs = sum(e["seconds"] for e in epochs)
        nruns.append({"img_per_s": imgs / secs, "epoch_img_per_s": [e["img_per_s"] for e in epochs],
                      "process": timed(p(f"nncc.{k}.time"))})
        t = json.loads(open(p(f"torch.{k}.json")).read())
        truns.append({"img_per_s": t["img_per_s"], "json": t, "process": timed(p(f"torch.{k}.time"))})
    # each side's median run (the lower middle one for an even count)
    median = lambda runs: sorted(runs, key=lambda x: x["img_per_s"])[(len(runs) - 1) // 2]
    nm, tm_ = median(nruns), median(truns)
    t = tm_["json"]
    flops = int(open(p("flops")).read())
    r = {"model": m, "batch": t["batch"], "warmup_steps": t["warmup"], "steps": t["steps"],
         "train_step_flops": flops, "repeat": repeat,
         "nncc_img_per_s": nm["img_per_s"], "torch_img_per_s": t["img_per_s"],
         "nncc_runs_img_per_s": [x["img_per_s"] for x in nruns],
         "torch_runs_img_per_s": [x["img_per_s"] for x in truns],
         "nncc_epoch_img_per_s": nm["epoch_img_per_s"],
         "nncc_process": dict(nm["process"], peak_rss_mib=max(x["process"]["peak_rss_mib"] for x in nruns)),
         "torch_process": dict(tm_["process"], peak_rss_mib=max(x["process"]["peak_rss_mib"] for x in truns)),
         "torch_ms": {k[3:]: t[k] for k in ("ms_forward", "ms_backward", "ms_adam")},
         "nncc_runs_process": [x["process"] for x in nruns],
         "torch_runs_process": [x["process"] for x in truns]}
    r["nncc_peak_rss_mib"] = r["nncc_process"]["peak_rss_mib"]
    r["torch_peak_rss_mib"] = r["torch_process"]["peak_rss_mib"]
    if os.path.exists(p("nncc_O0.jsonl")):
        e0 = [json.loads(l) for l in open(p("nncc_O0.jsonl"))][1:]
        r["nncc_O0_img_per_s"] = sum(e["img_per_s"] * e["seconds"] for e in e0) / sum(e["seconds"] for e in e0)
        r["nncc_O0_process"] = timed(p("nncc_O0.time"))
    r["nncc_gflops"] = flops * r["nncc_img_per_s"] / r["batch"] / 1e9
    r["torch_gflops"] = flops * r["torch_img_per_s"] / r["batch"] / 1e9
    rows.append(r)
print(f"\n{'model':10} {'nncc img/s':>10} {'torch img/s':>11} {'ratio':>6} {'nncc MiB':>9} {'torch MiB':>9} "
      f"{'ratio':>6} {'GFLOP/step':>10} {'nncc GF/s':>9} {'%peak':>6} {'torch GF/s':>10} {'%peak':>6}")
for r in rows:
    print(f"{r['model']:10} {r['nncc_img_per_s']:10.1f} {r['torch_img_per_s']:11.1f} "
          f"{r['nncc_img_per_s'] / r['torch_img_per_s']:6.2f} {r['nncc_peak_rss_mib']:9.1f} "
          f"{r['torch_peak_rss_mib']:9.1f} {r['nncc_peak_rss_mib'] / r['torch_peak_rss_mib']:6.2f} "
          f"{r['train_step_flops'] / 1e9:10.2f} {r['nncc_gflops']:9.1f} {100 * r['nncc_gflops'] / peak:5.1f}% "
          f"{r['torch_gflops']:10.1f} {100 * r['torch_gflops'] / peak:5.1f}%")
print(f"(ISA {isa}, threads {threads}; each side's median of {repeat} alternating runs, peak RSS the largest; "
      f"ratio = nncc/torch, >1 means nncc has more img/s or more memory; "
      f"%peak of " + (f"the measured {fma_isa} FMA peak" if measured_peak else "a given") + f" {peak:.0f} GFLOP/s)")
print(f"measured fp32 FMA peak on {threads} threads, {fma_isa} (bench/peak_fma.c): {fma:.0f} GFLOP/s")
print("GFLOP/step counts each convolution's direct multiply-adds; nncc's Winograd convolutions (5x5, stride 1: "
      "docs/backend.md) do about 36/100 of them, so its GF/s and %peak are direct-equivalent")
print("PyTorch's malloc: " + ("glibc keeping freed memory (--torch-malloc keep)" if os.environ["TORCH_MALLOC"] == "keep"
                              else "glibc's default, returning big tensors to the kernel each step (--torch-malloc default)"))
for r in rows:
    if "nncc_O0_img_per_s" in r:
        o0 = r["nncc_O0_process"]
        print(f"{r['model']}: passes off (-O0) {r['nncc_O0_img_per_s']:.1f} img/s, peak RSS "
              f"{o0['peak_rss_mib']:.1f} MiB -> passes on (-O1) {r['nncc_img_per_s']:.1f} img/s "
              f"({r['nncc_img_per_s'] / r['nncc_O0_img_per_s']:.2f}x), {r['nncc_peak_rss_mib']:.1f} MiB "
              f"({r['nncc_peak_rss_mib'] / o0['peak_rss_mib']:.2f}x)")
for r in rows:
    ep = ", ".join(f"{v:.0f}" for v in r["nncc_epoch_img_per_s"])
    tm = r["torch_ms"]
    runs = lambda side: ", ".join(f"{v:.0f}" for v in r[side + "_runs_img_per_s"])
    print(f"{r['model']}: img/s of each run: nncc {runs('nncc')}; torch {runs('torch')}")
    print(f"{r['model']}: {r['warmup_steps']} warm-up + {r['steps']} measured steps; nncc img/s per "
          f"{r['warmup_steps']}-step epoch (median run): {ep}; torch ms/step (median run) forward "
          f"{tm['forward']:.1f}, backward {tm['backward']:.1f}, adam {tm['adam']:.1f}")
    for side in ("nncc", "torch"):
        for k, pr in enumerate(r[side + "_runs_process"], 1):
            if pr["others_cpus"] > 0.1 or pr["steal_cpus"] > 0.1:
                print(f"  warning: while {r['model']}'s {side} run {k} went ({pr['wall_s']:.0f} s), other "
                      f"processes used {pr['others_cpus']:.2f} CPUs and the hypervisor stole {pr['steal_cpus']:.2f}")
if results:
    with open(results, "w") as f:
        json.dump({"commit": commit, "isa": isa, "threads": threads, "peak_gflops": peak,
                   "torch_malloc": os.environ["TORCH_MALLOC"],
                   "measured_fma_peak_gflops": fma, "measured_fma_isa": fma_isa,
                   "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
                   "results": rows}, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(results)}")
PY

# ---- optional: where the nncc step goes (perf, DWARF call graphs) ----
# A --steps run that stops inside its first epoch never evaluates, so every
# sample in forward() belongs to a training step.
if [ "$perf" = 1 ]; then
  command -v perf >/dev/null || die "--perf: perf is not installed (apt-get install -y linux-perf)"
  for m in $models; do
    d=$out/perf && mkdir -p "$d"
    cp "$out/$m.c" "$d/"
    # -g changes no code, and lets perf attribute samples to the inlined kernels
    make -s -C "$d" -f "$root/generated/Makefile" NNCC_ROOT="$root" OPTFLAGS="-O3 -march=native -g" "$m" >/dev/null
    IFS=, read -r warm steps <<<"${counts[$m]}"
    k=$(( warm + steps / 2 ))
    bench_subset "$root/data/mnist" "$d/data_$m" $(( (k + 1) * ${batch[$m]} )) "${batch[$m]}"
    perf record -q -o "$d/$m.data" -F 100 --call-graph dwarf,8192 -- "$d/$m" train \
      --data "$d/data_$m" --steps "$k" --threads "$threads" --quiet >/dev/null 2>&1
    perf report -i "$d/$m.data" --stdio --children --sort sym -g none 2>/dev/null >"$d/$m.txt"
    $py - "$d/$m.txt" "$m" "$k" <<'PY'
import re, sys
incl, self_ = {}, {}
for line in open(sys.argv[1]):
    mt = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(.*?)\s*$", line)
    if mt:
        incl.setdefault(mt[3], float(mt[1]))
        self_[mt[3]] = self_.get(mt[3], 0.0) + float(mt[2])
fwd, bwd = incl.get("forward._omp_fn.0", 0.0), incl.get("backward._omp_fn.0", 0.0)
rest = {k.split(".")[0]: v for k, v in incl.items() if k.startswith(("adam_tensor", "sgd_tensor", "loss_xent", "batch_fill"))}
print(f"\nnncc {sys.argv[2]}: perf samples of both threads, {sys.argv[3]} steps, start-up included: "
      f"forward {fwd:.1f}%, backward {bwd:.1f}%, " + ", ".join(f"{k} {v:.1f}%" for k, v in rest.items()) +
      f"; forward:backward = {fwd / (fwd + bwd):.2f}:{bwd / (fwd + bwd):.2f}")
spin = sum(v for k, v in self_.items() if k.startswith("0x"))  # libgomp has no symbols
print(f"libgomp (barrier and idle spin waits; those inside forward/backward count there too): {spin:.1f}%")
# a node's kernel: its own function, or inlined into forward()/backward()
layers = {}
for k, v in incl.items():
    mk = re.match(r"(\w+_(?:forward|backward))(?: \(inlined\))?$", k)
    if mk and not k.startswith(("nncc_", "nk_")):  # not the runtime's helpers
        layers[mk[1]] = max(layers.get(mk[1], 0.0), v)
layers = sorted(((v, k) for k, v in layers.items()), reverse=True)
print("per kernel call, inclusive (barrier waits after each kernel not included):")
for v, k in layers[:12]:
    print(f"  {k:28} {v:5.1f}%")
PY
  done
fi
