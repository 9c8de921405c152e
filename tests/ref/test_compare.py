#!/usr/bin/python3
"""compare's decision-flip rule (compare.c) on made-up files:
test_compare.py COMPARE.  Each case writes a reference and a result
(safetensors, F32) and checks compare's exit status and verdict line."""
import json, os, struct, subprocess, sys, tempfile

COMPARE = sys.argv[1]

def write(path, tensors):
    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)

# A reference: logits, then three layers in forward order, each [4, 2]
# weights and [4] bias, every value 1.0 (so rel = max diff).
LAYERS = ["conv1", "conv2", "conv3"]
def reference():
    t = [("logits", [2, 2], [1.0] * 4)]
    for l in LAYERS:
        t += [(l + ".weight", [4, 2], [1.0] * 8), (l + ".bias", [4], [1.0] * 4)]
    return t

def result(changes):
    """changes: {tensor name: [(index, difference)]}"""
    t = []
    for name, shape, values in reference():
        v = list(values)
        for i, d in changes.get(name, []):
            v[i] += d
        t.append((name, shape, v))
    return t

CASES = [
    # (what, changes, passes)
    ("flip in the last layer alone", {"conv3.weight": [(2, 3e-3), (3, -1e-3)], "conv3.bias": [(1, 2e-3)]}, True),
    ("flip, and the layers before it within 2x", {"conv3.weight": [(6, 3e-3)], "conv2.weight": [(0, 5e-3)],
                                                  "conv1.bias": [(2, -6e-3)]}, True),
    ("layers before the flip beyond 2x", {"conv3.weight": [(6, 3e-3)], "conv1.weight": [(0, 7e-3)]}, False),
    ("two channels of the last layer", {"conv3.weight": [(0, 3e-3), (6, 3e-3)]}, False),
    ("flip channels disagree", {"conv3.weight": [(0, 3e-3)], "conv3.bias": [(2, 3e-3)]}, False),
    ("the logits", {"conv3.weight": [(6, 3e-3)], "logits": [(0, 1e-3)]}, False),
    ("a flip in a middle layer, the last layer off", {"conv2.weight": [(6, 3e-3)], "conv3.bias": [(0, 1e-3), (1, 1e-3)]}, False),
    ("everything within tolerance", {"conv2.weight": [(6, 5e-5)]}, True),
]

failed = 0
with tempfile.TemporaryDirectory() as d:
    ref = os.path.join(d, "ref.safetensors")
    write(ref, reference())
    for what, changes, passes in CASES:
        got = os.path.join(d, "got.safetensors")
        write(got, result(changes))
        p = subprocess.run([COMPARE, ref, got], capture_output=True, text=True)
        verdict = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr
        ok = (p.returncode == 0) == passes and verdict.endswith("ok" if passes else "FAIL")
        print("%s: %s (%s, exit %d)" % ("ok" if ok else "WRONG", what, "passes" if passes else "fails", p.returncode))
        if not ok:
            print(p.stdout + p.stderr)
            failed += 1
print("%d of %d cases right" % (len(CASES) - failed, len(CASES)))
sys.exit(1 if failed else 0)
