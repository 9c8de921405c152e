#!/usr/bin/python3
"""Checks a file written by `nncc export MODEL.nn --load CKPT -o MODEL.onnx`
against the trainer's own eval-mode logits.

Usage (Debian's python: numpy, onnx 1.12, OpenCV 4.6; no torch):

    T=trainer-of-MODEL            # nncc build MODEL.nn -o $T, or nncc + cc
    $T eval --data DIR --load CKPT --logits L.safetensors
    /usr/bin/python3 tests/onnx/check_export.py MODEL.onnx \\
        --images DIR/t10k-images-idx3-ubyte --logits L.safetensors \\
        [--hw H W] [--pad TOP LEFT] [--count K] [--weights CKPT]

The logits: `eval --logits F` writes every test image's logits (the
t10k-images file of DIR, in file order) in eval mode -- running statistics,
no dropout -- as the float32 tensor `logits` [images, classes] of a
safetensors file, bit for bit what the trainer computed.  So --images must be
that same t10k-images file (raw or gzipped: the runtime reads both, through
zlib's gzread; told apart here by the gzip magic, not by the name).  The
other sources are worse: `predict` prints softmax probabilities rounded to 4
decimals, `eval --report-json` only aggregates, and `grads --out`'s `logits`
(the first training batch) come from a training-mode forward, equal to eval
mode only for a model without batch norm or dropout.

--hw H W and --pad TOP LEFT: the model's input canvas and where mnist(pad=...)
puts each image in it: mnist(pad=P) is H = W = 28 + 2P, TOP = LEFT = P;
mnist(pad=[TOP, LEFT]) may be uneven (docs/language.md).  --hw defaults to
the ONNX input's static H, W; --pad to the image centred, (H - rows) // 2 and
(W - cols) // 2, right for mnist and mnist(pad=P) but not for an uneven
mnist(pad=[TOP, LEFT]): give that one.  As the
runtime does (runtime/batch.c batch_fill), pixel (y, x) of an image becomes
(float)byte / 255.0f at row TOP + y, column LEFT + x of the H x W plane, the
rest 0; one channel (the runtime allows only in_c = 1).

Checks, in order (the first failure ends the run):
  0. the interface: opset 13 (default domain), one input `input` [N, 1, H, W]
     float with N symbolic, one output `logits` [N, classes] float with N
     symbolic and classes the logits file's; no Dropout node; every
     BatchNormalization in eval form (one output, training_mode 0);
     with --weights CKPT: every model tensor of the checkpoint (not optim.*,
     not *.num_batches_tracked) is an initializer of that name, shape and
     exactly those float32 values (other initializers are listed, allowed);
  1. onnx.checker.check_model(model, full_check=True);
  2. cv2.dnn.readNetFromONNX reads it and its forward pass on the first K
     images (default: as many as the logits file has) gives logits with
     max |cv2 - trainer| / max(max |trainer|, tiny) <= 1e-5.
     OpenCV 4.6 reads only Clip-6 (min and max attributes), not opset 11+'s
     Clip(x, min, max): each Clip whose bounds are initializers or Constant
     nodes is rewritten that way in memory first (the file is not changed).
     (tests/onnx/gen_onnx.py does the same for Constant bounds only, and
     imports torch, so this is a reimplementation.)

Prints what it measured; exits 0 if all pass, 1 with a one-line reason
(`check_export.py: FAIL: ...`) otherwise, 2 on a usage error.
"""
import argparse
import gzip
import json
import struct
import sys

import numpy as np

import cv2
import onnx
from onnx import helper, numpy_helper

OPSET = 13
TOLERANCE = 1e-5


class Fail(Exception):
    pass


def one_line(e):
    s = " ".join(str(e).split())
    return s if len(s) <= 400 else s[:400] + "..."


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise Fail("%s: not a safetensors file (%d bytes)" % (path, len(raw)))
    n = struct.unpack("<Q", raw[:8])[0]
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise Fail("%s: bad safetensors header: %s" % (path, e))
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}.get(e["dtype"])
        if dtype is None:
            raise Fail("%s: tensor %s has dtype %s" % (path, name, e["dtype"]))
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtype).reshape(e["shape"])
    return out


def read_images(path):
    """An IDX3 ubyte file, raw or gzipped, as uint8 [n, rows, cols]."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 16 or struct.unpack(">I", raw[:4])[0] != 0x803:
        raise Fail("%s: not an IDX3 ubyte image file" % path)
    n, rows, cols = struct.unpack(">3I", raw[4:16])
    if len(raw) - 16 != n * rows * cols:
        raise Fail("%s: %d data bytes, the header declares %d x %d x %d" % (path, len(raw) - 16, n, rows, cols))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def prepare(images, k, top, left, h, w):
    """The first k images as the runtime's eval batches hold them."""
    _, rows, cols = images.shape
    if top + rows > h or left + cols > w:
        raise Fail("%dx%d images at (%d, %d) do not fit the %dx%d input" % (rows, cols, top, left, h, w))
    x = np.zeros((k, 1, h, w), dtype=np.float32)
    x[:, 0, top:top + rows, left:left + cols] = images[:k].astype(np.float32) / np.float32(255.0)
    return x


def dims(v):
    """A value's shape: ints, or strings for symbolic (or unknown) ones."""
    t = v.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def check_interface(m, classes, hw, weights):
    """Check 0; returns the input's (H, W) (--hw, else the static ones)."""
    g = m.graph
    ops = {o.domain: o.version for o in m.opset_import}
    v = ops.get("", ops.get("ai.onnx"))
    if v != OPSET:
        raise Fail("opset %s, want %d" % (v, OPSET))
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if [i.name for i in inputs] != ["input"] or [o.name for o in g.output] != ["logits"]:
        raise Fail("inputs %s, outputs %s; want ['input'], ['logits']"
                   % ([i.name for i in inputs], [o.name for o in g.output]))
    fl = onnx.TensorProto.FLOAT
    x, y = inputs[0], g.output[0]
    dx, dy = dims(x), dims(y)
    if x.type.tensor_type.elem_type != fl or y.type.tensor_type.elem_type != fl:
        raise Fail("input or output is not float32")
    if len(dx) != 4 or dx[1] != 1 or not isinstance(dx[0], str):
        raise Fail("input shape %s, want [N, 1, H, W] with N symbolic" % dx)
    if len(dy) != 2 or not isinstance(dy[0], str) or dy[1] != classes:
        raise Fail("output shape %s, want [N, %d] with N symbolic" % (dy, classes))
    if hw is None:
        if not all(isinstance(d, int) for d in dx[2:]):
            raise Fail("input shape %s has no static H, W: give --hw" % dx)
        hw = tuple(dx[2:])
    elif any(isinstance(d, int) and d != e for d, e in zip(dx[2:], hw)):
        raise Fail("input shape %s, but --hw %d %d" % (dx, hw[0], hw[1]))
    for n in g.node:
        if n.op_type == "Dropout":
            raise Fail("a Dropout node (%s)" % n.name)
        if n.op_type == "BatchNormalization":
            tm = [a.i for a in n.attribute if a.name == "training_mode"]
            if len(n.output) != 1 or any(tm):
                raise Fail("BatchNormalization %s is in training form" % n.name)
    if weights:
        ck = read_safetensors(weights)
        vals = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        want = [n for n in ck if not n.startswith("optim.") and not n.endswith(".num_batches_tracked")]
        for n in want:
            if n not in vals:
                raise Fail("no initializer named %s (a tensor of %s)" % (n, weights))
            a, b = vals[n], ck[n]
            if a.dtype != np.float32 or a.shape != b.shape or not np.array_equal(a, b):
                raise Fail("initializer %s (%s %s) is not the checkpoint's (%s %s)"
                           % (n, a.dtype, list(a.shape), b.dtype, list(b.shape)))
        extra = sorted(set(vals) - set(want))
        more = ", ..." if len(extra) > 6 else ""
        print("initializers: the %d tensors of %s, exactly%s" % (len(want), weights,
              "; %d others: %s%s" % (len(extra), ", ".join(extra[:6]), more) if extra else ""))
    return hw


def cv2_clips(m):
    """Rewrites, in m, each Clip(x, min, max) whose bounds are initializers
    or Constant nodes into Clip-6's form (attributes min, max), and drops
    the bound tensors nothing else uses; returns how many."""
    g = m.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1:
            a = n.attribute[0]
            if a.name == "value":
                consts[n.output[0]] = numpy_helper.to_array(a.t)
            elif a.name == "value_float":
                consts[n.output[0]] = np.float32(a.f)
    k = 0
    for n in g.node:
        if n.op_type != "Clip" or len(n.input) < 2:
            continue
        attrs = []
        for name, b in zip(("min", "max"), n.input[1:3]):
            if not b:
                continue  # an omitted bound
            if b not in consts or np.size(consts[b]) != 1:
                raise Fail("Clip %s: its %s (%s) is not a constant scalar; OpenCV 4.6 cannot read it"
                           % (n.name, name, b))
            attrs.append(helper.make_attribute(name, float(np.asarray(consts[b]).reshape(()))))
        del n.input[1:]
        n.attribute.extend(attrs)
        k += 1
    if k:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]
        for n in dead:
            g.node.remove(n)
        for t in [t for t in g.initializer if t.name not in used]:
            g.initializer.remove(t)
        for i in [i for i in g.input if i.name in consts and i.name not in used]:
            g.input.remove(i)
    return k


def main():
    ap = argparse.ArgumentParser(description="check an `nncc export` ONNX file against the trainer's "
                                 "eval-mode logits (see the docstring)")
    ap.add_argument("onnx", metavar="MODEL.onnx")
    ap.add_argument("--images", required=True, help="the IDX3 images the logits are of (raw or .gz)")
    ap.add_argument("--logits", required=True, metavar="L.safetensors",
                    help="the trainer's `eval --logits` output (tensor `logits` [images, classes])")
    ap.add_argument("--pad", nargs=2, type=int, metavar=("TOP", "LEFT"),
                    help="where the image sits in the input (default: centred)")
    ap.add_argument("--hw", nargs=2, type=int, metavar=("H", "W"),
                    help="the input's height and width (default: the ONNX input's)")
    ap.add_argument("--count", type=int, metavar="K", help="images to compare (default: all logits)")
    ap.add_argument("--weights", metavar="CKPT", help="also check the initializers against this checkpoint")
    a = ap.parse_args()
    if (a.pad and min(a.pad) < 0) or (a.hw and min(a.hw) < 1) or (a.count is not None and a.count < 1):
        ap.error("--pad must be >= 0, --hw and --count >= 1")

    ref = read_safetensors(a.logits).get("logits")
    if ref is None or ref.ndim != 2 or ref.dtype != np.float32:
        raise Fail("%s: no float32 tensor `logits` [images, classes]" % a.logits)
    images = read_images(a.images)
    k = a.count if a.count is not None else ref.shape[0]
    if k > ref.shape[0] or k > images.shape[0]:
        raise Fail("--count %d, but %s has %d rows and %s %d images"
                   % (k, a.logits, ref.shape[0], a.images, images.shape[0]))
    ref = ref[:k].astype(np.float32)

    m = onnx.load(a.onnx)
    hw = check_interface(m, ref.shape[1], tuple(a.hw) if a.hw else None, a.weights)
    print("interface: opset %d, input [N, 1, %d, %d], output [N, %d]" % (OPSET, hw[0], hw[1], ref.shape[1]))

    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # checker errors, shape-inference errors
        raise Fail("onnx.checker.check_model(full_check=True): %s: %s" % (type(e).__name__, one_line(e)))
    print("onnx.checker.check_model(full_check=True): ok")

    top, left = a.pad if a.pad else ((hw[0] - images.shape[1]) // 2, (hw[1] - images.shape[2]) // 2)
    if top < 0 or left < 0:
        raise Fail("%dx%d images do not fit the %dx%d input" % (images.shape[1], images.shape[2], hw[0], hw[1]))
    x = prepare(images, k, top, left, hw[0], hw[1])
    clips = cv2_clips(m)
    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(m.SerializeToString(), dtype=np.uint8))
        net.setInput(x)
        got = net.forward()
    except cv2.error as e:
        raise Fail("OpenCV: %s" % one_line(e))
    if clips:
        print("cv2: %d Clip node(s) rewritten to Clip-6's min/max attributes (in memory)" % clips)
    if got.shape != ref.shape:
        raise Fail("cv2 gives logits %s, the trainer %s" % (list(got.shape), list(ref.shape)))
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    scale = max(float(np.abs(ref).max()), np.finfo(np.float32).tiny)
    rel = diff / scale
    agree = int((got.argmax(1) == ref.argmax(1)).sum())
    print("cv2 vs trainer (eval, %d images, input %dx%d, image at row %d, column %d): "
          "max |diff| %.3g, max |logit| %.3g, rel %.3g (tolerance %g); argmax agrees on %d/%d"
          % (k, hw[0], hw[1], top, left, diff, scale, rel, TOLERANCE, agree, k))
    if not rel <= TOLERANCE:  # NaN fails too
        raise Fail("cv2's logits differ from the trainer's by %.3g relative (> %g)" % (rel, TOLERANCE))
    print("OK")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        sys.exit("check_export.py: FAIL: %s" % e)
    except Exception as e:  # unreadable files and the like: still one line
        sys.exit("check_export.py: FAIL: %s: %s" % (type(e).__name__, one_line(e)))
