#!/usr/bin/python3
"""same_graph.py A.ir B.ir -- the round-trip check of tests/onnx/run_export.sh.

A is `nncc --dump-ir --dump-after=shape` of a model, B the same of the model
`nncc import` made from its export.  They must be the same graph: the same
ops in the same order with the same attributes, types and parameters
(names included: both keep the state_dict names).  What the round trip
cannot keep is read as equal, and only that:

  - node names (other than the parameters') and the source comments: the
    imported nodes are named after the ONNX nodes;
  - dropout, the identity at inference, which export leaves out: its
    output reads as its input;
  - conv2d's padding="same", which export writes as the pads it resolves
    to (d*(k-1)/2 each side when that is even);
  - an adaptive pool whose output divides its input, which export writes
    as a plain pool of window = stride = input / output;
  - the loss's label_smoothing, the totals and the train line (an ONNX
    file has no loss or optimizer).

Prints the first difference and exits 1, or exits 0.
"""
import re
import sys

NODE = re.compile(r"^(%\S+)\s+(\w+)\((.*?)\)\s*(.*)$")


def read(path):
    """The graph as a list of normalized lines."""
    alias, ids, dims, out = {}, {}, {}, []

    def name(t):
        while t in alias:
            t = alias[t]
        return ids.setdefault(t, "%%n%d" % (len(ids) + 1))

    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith(";") or not line.strip():
            continue
        line = line.split(" ;")[0].rstrip()
        m = NODE.match(line)
        if not m:  # a parameter line: kept as it is
            out.append(" ".join(line.split()))
            continue
        node, op, args, rest = m.groups()
        ins = [a.strip() for a in args.split(",") if a.strip()]
        if op == "dropout":
            alias[node] = ins[0]
            continue
        t = re.search(r"f32\[([0-9,]+)\]", rest)
        dims[node] = [int(v) for v in t.group(1).split(",")] if t else []
        attrs = rest
        if op == "cross_entropy":  # the loss is training's: ONNX has none
            attrs = re.sub(r"label_smoothing=\S+\s*", "", rest)
        if op == "conv2d" and "padding=same" in rest:
            k = [int(v) for v in re.search(r"kernel=(\d+)x(\d+)", rest).groups()]
            d = re.search(r"dilation=(\d+)x(\d+)", rest)
            d = [int(v) for v in d.groups()] if d else [1, 1]
            total = [d[i] * (k[i] - 1) for i in range(2)]
            if all(v % 2 == 0 for v in total):
                attrs = rest.replace("padding=same", "padding=%dx%d" % (total[0] // 2, total[1] // 2))
        a = re.match(r"output=(\d+)x(\d+)\s+(.*)", rest)
        if op in ("adaptive_maxpool2d", "adaptive_avgpool2d") and a:
            o = [int(a.group(1)), int(a.group(2))]
            src = ins[0]
            while src in alias:
                src = alias[src]
            h, w = dims[src][2:4]
            if (o != [1, 1]) and h % o[0] == 0 and w % o[1] == 0:
                op = op[len("adaptive_"):]
                attrs = "kernel=%dx%d stride=%dx%d padding=0x0 %s" % (
                    h // o[0], w // o[1], h // o[0], w // o[1], a.group(3))
        dims[node] = dims.get(node, [])
        out.append(" ".join(("%s %s(%s) %s" % (name(node), op, ", ".join(name(i) for i in ins),
                                                attrs)).split()))
        dims[ids[node]] = dims[node]
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    a, b = read(sys.argv[1]), read(sys.argv[2])
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            print("same_graph.py: line %d differs:\n  < %s\n  > %s" % (i + 1, x, y))
            return 1
    if len(a) != len(b):
        print("same_graph.py: %d lines against %d" % (len(a), len(b)))
        return 1
    print("round trip: the same graph (%d lines)" % len(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
