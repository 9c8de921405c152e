#!/usr/bin/python3
"""ONNX test inputs for nncc's importer (`nncc import M.onnx -o M.nn
--weights W.safetensors`), and PyTorch 1.13 references for the imported
models.

Regenerate (from the repository root, with Debian's python, the one that has
torch 1.13, onnx 1.12 and OpenCV 4.6; the tests themselves need none of them):

    /usr/bin/python3 tests/onnx/gen_onnx.py

It reuses tests/ref/gen_ref.py (imported, not copied) and writes, into
tests/onnx/:

  <model>.onnx
      torch.onnx.export of the model in eval mode: opset 13, input "input"
      [batch, 1, H, W], output "logits" [batch, 10], batch a symbolic
      dimension; every parameter an initializer under its state_dict name
      (= nncc's parameter name), every batch norm a BatchNormalization node
      whose scale, B, mean and var are the initializers <bn>.weight,
      <bn>.bias, <bn>.running_mean, <bn>.running_var (checked here).  The
      export uses training=TrainingMode.PRESERVE: the default (EVAL) runs
      torch's eval peephole, which folds each batch norm into the
      convolution before it and names the folded weights onnx::Conv_NNN.
      Its initializers hold the starting state of <model>.init.safetensors.
  data_<model>/, <model>.init.safetensors, <model>.ref.safetensors,
  <model>.step1.safetensors (batch-norm models)
      exactly what gen_ref.generate writes for tests/ref (see gen_ref.py's
      docstring), for the model the ONNX file describes.  The data set's
      training set is one batch of `batch` images; H = W = 28 + 2 * pad
      (nncc's mnist(pad=...)); the losses are Adam steps at `lr` (resnet_small:
      the SGD of models/resnet_small.nn's train line):

        model             batch  pad  optimizer                                 steps  seed
        mnist_cnn           256    0  adam(lr=0.0002)                              10     1
        resnet_small        128    0  sgd(lr=0.05, momentum=0.9, wd=0.0005)        2    17
        vgg11_narrow         64    2  adam(lr=0.0001)                               2    18
        squeezenet_mini      64    0  adam(lr=0.001)                                2     6
        mobilenetv2_mini     64    0  adam(lr=0.001)                                2     5

      mnist_cnn is gen_ref's model, seed and all, so its files are those of
      tests/ref.  squeezenet_mini and mobilenetv2_mini are gen_ref's models
      without their dropout: an eval-mode export has no Dropout node (torch
      drops it), so the imported model has none, and their references
      (training-mode passes, losses) are computed without it; their starting
      state and data equal tests/ref's, their .ref/.step1 files do not.
  dropout_gemm.onnx
      built with onnx.helper: x [N,1,28,28] -> Flatten -> MatMul fc.weight_t
      [784,32] -> Add fc.bias -> Relu -> Dropout (ratio: the initializer
      dropout.ratio = 0.25) -> Gemm(transB=1) out.weight [10,32], out.bias ->
      logits [N,10].  No reference.
  names.onnx
      built with onnx.helper: the importer's naming rules (make_names).
  bad_op.onnx, bad_autopad.onnx, bad_pads.onnx, bad_dtype.onnx, two_outputs.onnx,
  external_data.onnx, bad_opset.onnx, bad_shape.onnx, truncated.onnx, garbage.onnx
      malformed or unsupported files for the importer's error tests (see
      make_error_files).

Checks (each failure exits non-zero): the initializer names and values and
the BatchNormalization inputs above, onnx.checker.check_model, that the
starting state rebuilt here equals <model>.init.safetensors, and that
OpenCV's cv2.dnn.readNetFromONNX gives the eval-mode logits of the test
images within 1e-5 (relative to the largest logit) of PyTorch's.

Deterministic: a rerun rewrites the same bytes.
"""
import json
import os
import struct
import sys
import warnings
from collections import Counter

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import cv2
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no tests/ref/__pycache__
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import gen_ref  # noqa: E402

OPSET = 13
CV2_TOLERANCE = 1e-5


def fail(msg):
    sys.exit("gen_onnx.py: " + msg)


# ---- the models --------------------------------------------------------


class Residual(nn.Module):
    """models/resnet_small.nn's residual block (ResNet's BasicBlock)."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, h):
        r = F.relu(self.bn1(self.conv1(h)))
        r = self.bn2(self.conv2(r))
        return F.relu(h + r)


class ResnetSmall(nn.Module):
    """models/resnet_small.nn, its train line included (make_opt)"""

    batch, pad, lr, steps = 128, 0, 0.05, gen_ref.FEW_STEPS

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.residual1 = Residual(32)
        self.residual2 = Residual(32)
        self.residual3 = Residual(32)
        self.fc1 = nn.Linear(32, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.max_pool2d(self.residual1(h), 2)
        h = F.max_pool2d(self.residual2(h), 2)
        h = F.adaptive_avg_pool2d(self.residual3(h), 1)
        return self.fc1(torch.flatten(h, 1))

    def make_opt(self, params):
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=0.0005, foreach=False)


class Vgg11Narrow(nn.Module):
    """torchvision's VGG cfg 'A' (vgg11) at 1/8 width on 1x32x32, without
    its adaptive average pool (the features are 64x1x1) and dropout;
    torchvision's module names (features.0, classifier.0, ...)."""

    batch, pad, lr, steps = 64, 2, 0.0001, gen_ref.FEW_STEPS
    cfg = [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]

    def __init__(self):
        super().__init__()
        layers, c = [], 1
        for v in self.cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                        nn.Linear(256, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def replace_dropout(cls, make):
    """cls with each gen_ref.Dropout replaced by make(p) after construction
    (which draws no random numbers, so the starting state is cls's)."""

    class Replaced(cls):
        def __init__(self):
            super().__init__()
            for mod in list(self.modules()):
                for n, child in list(mod.named_children()):
                    if isinstance(child, gen_ref.Dropout):
                        setattr(mod, n, make(child.p))

    Replaced.__name__ = Replaced.__qualname__ = cls.__name__ + "NoDropout"
    return Replaced


def no_dropout(cls):
    """(the class for the references, the class for the export): without
    dropout (what the eval-mode ONNX graph computes), and with nn.Dropout,
    which the eval-mode export drops."""
    return replace_dropout(cls, lambda p: nn.Identity()), replace_dropout(cls, nn.Dropout)


# name, reference class, export class, seed, test images
MODELS = [("mnist_cnn", gen_ref.MnistCnn, gen_ref.MnistCnn, 1, 10),
          ("resnet_small", ResnetSmall, ResnetSmall, 17, 10),
          ("vgg11_narrow", Vgg11Narrow, Vgg11Narrow, 18, 10),
          ("squeezenet_mini", *no_dropout(gen_ref.SqueezenetMini), 6, 10),
          ("mobilenetv2_mini", *no_dropout(gen_ref.Mobilenetv2Mini), 5, 10)]


# ---- helpers -----------------------------------------------------------


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        dtype = {"F32": "<f4", "I64": "<i8"}[e["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtype).reshape(e["shape"])
    return out


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def starting_model(cls, seed):
    """The starting state exactly as gen_ref.generate makes it."""
    torch.manual_seed(seed)
    model = cls()
    gen_ref.perturb_batchnorm(model, torch.Generator().manual_seed(seed))
    return model


def save_model(path, model):
    data = model.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return data


def export(model, path, hw):
    """torch.onnx.export with the settings the importer's tests need:
    TrainingMode.PRESERVE on a model in eval mode exports eval semantics
    (BatchNormalization with running statistics, no Dropout) but skips the
    eval peephole (training=EVAL, the default, folds each BatchNormalization
    into the Conv before it, under new initializer names onnx::Conv_NNN).
    Constant folding stays on: it only folds the Casts of Clip's bounds; it
    touches no parameter (checked below).  torch warns that folding and
    PRESERVE are risky for a model in training mode; ours is in eval mode."""
    model.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "It is recommended that constant folding be turned off")
        torch.onnx.export(model, torch.zeros(2, 1, hw, hw), path, export_params=True,
                          opset_version=OPSET, training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def check_export(name, path, model):
    """Requirements (a) and (b) of the importer, the checker, the op list."""
    m = onnx.load(path)
    onnx.checker.check_model(m)
    g = m.graph
    if m.opset_import[0].version != OPSET or len(m.opset_import) != 1:
        fail("%s: opset %s" % (name, m.opset_import))
    if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["logits"]:
        fail("%s: inputs %s, outputs %s" % (name, [i.name for i in g.input], [o.name for o in g.output]))
    for v in (g.input[0], g.output[0]):
        d0 = v.type.tensor_type.shape.dim[0]
        if d0.dim_param != "batch" or d0.HasField("dim_value"):
            fail("%s: %s's dimension 0 is not symbolic" % (name, v.name))

    # (a) initializers: exactly the parameters and the batch norms' running
    # statistics (num_batches_tracked is unused in eval), each under its
    # state_dict name, each holding the starting state
    state = model.state_dict()
    bns = [n for n, mod in model.named_modules() if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))]
    want = {n for n, _ in model.named_parameters()}
    want |= {"%s.%s" % (b, s) for b in bns for s in ("running_mean", "running_var")}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    if set(inits) != want:
        fail("%s: initializers missing %s, extra %s" % (name, sorted(want - set(inits)), sorted(set(inits) - want)))
    for n, a in inits.items():
        if a.dtype != np.float32 or not np.array_equal(a, state[n].numpy()):
            fail("%s: initializer %s is not the starting state's" % (name, n))

    # (b) one BatchNormalization per batch norm, on its own initializers,
    # and no convolution folded away
    bn_nodes = [n for n in g.node if n.op_type == "BatchNormalization"]
    got = sorted(list(n.input[1:]) for n in bn_nodes)
    wantbn = sorted(["%s.%s" % (b, s) for s in ("weight", "bias", "running_mean", "running_var")] for b in bns)
    if got != wantbn:
        fail("%s: BatchNormalization inputs %s, want %s" % (name, got, wantbn))
    for n in bn_nodes:
        if len(n.output) != 1:
            fail("%s: a training-mode BatchNormalization (%d outputs)" % (name, len(n.output)))
    convs = sum(isinstance(mod, nn.Conv2d) for mod in model.modules())
    if sum(n.op_type == "Conv" for n in g.node) != convs:
        fail("%s: %d Conv nodes for %d convolutions" % (name, sum(n.op_type == "Conv" for n in g.node), convs))
    if any(n.op_type in ("Dropout", "Identity") for n in g.node):
        fail("%s: a Dropout or Identity node" % name)

    ops = Counter(n.op_type for n in g.node)
    print("  ops: " + ", ".join("%s x%d" % kv for kv in sorted(ops.items())))
    print("  %d nodes, %d initializers, %d bytes" % (len(g.node), len(g.initializer), os.path.getsize(path)))


def cv2_clips(m):
    """OpenCV 4.6 reads only Clip-6 (one input, min and max attributes), not
    opset 11's Clip(x, min, max).  Rewrites, in m, each Clip whose bounds come
    from Constant nodes into that form; returns how many."""
    g = m.graph
    consts = {n.output[0]: float(numpy_helper.to_array(n.attribute[0].t))
              for n in g.node if n.op_type == "Constant" and n.attribute[0].name == "value"}
    k = 0
    for n in g.node:
        if n.op_type == "Clip" and len(n.input) == 3:
            lo, hi = consts[n.input[1]], consts[n.input[2]]
            del n.input[1:]
            n.attribute.extend([helper.make_attribute("min", lo), helper.make_attribute("max", hi)])
            k += 1
    return k


def check_cv2(name, path, model, x):
    """OpenCV's forward pass of the file against PyTorch's eval mode."""
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    m = onnx.load(path)
    clips = cv2_clips(m)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(m.SerializeToString(), dtype=np.uint8))
    net.setInput(x.numpy())
    got = net.forward()
    if clips:
        print("  cv2: read with %d Clip nodes rewritten to Clip-6's min/max attributes" % clips)
    if got.shape != ref.shape:
        fail("%s: cv2 gives %s, torch %s" % (name, got.shape, ref.shape))
    diff = float(np.abs(got - ref).max())
    rel = diff / float(np.abs(ref).max())
    print("  cv2 vs torch (eval, %d test images): max |diff| %.3g, max |logit| %.3g, rel %.3g"
          % (x.shape[0], diff, np.abs(ref).max(), rel))
    if not rel <= CV2_TOLERANCE:
        fail("%s: cv2's logits differ from torch's by %.3g relative" % (name, rel))


def make(name, refcls, expcls, seed, ntest):
    print("== " + name)
    gen_ref.generate(name, refcls, seed, ntest)  # into gen_ref.HERE = here
    model = starting_model(refcls, seed)
    init = read_safetensors(os.path.join(HERE, name + ".init.safetensors"))
    state = model.state_dict()
    if set(init) != set(state) or any(not np.array_equal(init[n], state[n].numpy()) for n in state):
        fail("%s: the rebuilt starting state is not %s.init.safetensors" % (name, name))
    exp = expcls()
    exp.load_state_dict(state)
    path = os.path.join(HERE, name + ".onnx")
    hw = 28 + 2 * refcls.pad
    export(exp, path, hw)
    check_export(name, path, exp)
    d = os.path.join(HERE, "data_" + name)
    x, _ = gen_ref.to_batch(read_idx(os.path.join(d, "t10k-images-idx3-ubyte")),
                            read_idx(os.path.join(d, "t10k-labels-idx1-ubyte")), refcls.pad)
    check_cv2(name, path, exp, x)


# ---- onnx.helper files ---------------------------------------------------


def f32(rng, *shape, scale=0.1):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def model_of(nodes, inputs, outputs, inits, opset=OPSET, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, producer_name="nncc tests/onnx/gen_onnx.py",
                          opset_imports=[helper.make_opsetid("", opset)])
    return m


def x_input(elem=TensorProto.FLOAT, hw=28):
    return helper.make_tensor_value_info("x", elem, ["N", 1, hw, hw])


def logits_output(elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info("logits", elem, ["N", 10])


def make_dropout_gemm():
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array((rng.standard_normal((784, 32)) * 0.05).astype(np.float32), "fc.weight_t"),
             numpy_helper.from_array((rng.standard_normal(32) * 0.05).astype(np.float32), "fc.bias"),
             numpy_helper.from_array(np.array(0.25, dtype=np.float32), "dropout.ratio"),
             numpy_helper.from_array((rng.standard_normal((10, 32)) * 0.2).astype(np.float32), "out.weight"),
             numpy_helper.from_array((rng.standard_normal(10) * 0.2).astype(np.float32), "out.bias")]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten", axis=1),
             helper.make_node("MatMul", ["flat", "fc.weight_t"], ["mm"], name="fc.matmul"),
             helper.make_node("Add", ["mm", "fc.bias"], ["fc"], name="fc.add"),
             helper.make_node("Relu", ["fc"], ["relu"], name="relu"),
             helper.make_node("Dropout", ["relu", "dropout.ratio"], ["drop"], name="dropout"),
             helper.make_node("Gemm", ["drop", "out.weight", "out.bias"], ["logits"], name="out", transB=1)]
    m = model_of(nodes, [x_input()], [logits_output()], inits, name="dropout_gemm")
    onnx.checker.check_model(m)
    path = os.path.join(HERE, "dropout_gemm.onnx")
    save_model(path, m)
    # OpenCV (eval semantics: Dropout is the identity) against numpy
    x = np.random.RandomState(1).rand(3, 1, 28, 28).astype(np.float32)
    w = {t.name: numpy_helper.to_array(t) for t in inits}
    ref = np.maximum(x.reshape(3, 784) @ w["fc.weight_t"] + w["fc.bias"], 0) @ w["out.weight"].T + w["out.bias"]
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    rel = float(np.abs(net.forward() - ref).max() / np.abs(ref).max())
    print("== dropout_gemm: ops %s; cv2 vs numpy rel %.3g; %d bytes"
          % (", ".join(n.op_type for n in nodes), rel, os.path.getsize(path)))
    if not rel <= CV2_TOLERANCE:
        fail("dropout_gemm: cv2 differs from numpy by %.3g relative" % rel)


def make_names():
    """names.onnx: the importer's naming rules.  A Relu first (nncc names it
    relu1), then a Conv whose initializers' stem is that name (taken: the
    node is named after the ONNX node instead), a Conv whose weight and
    bias have different stems (no common stem: the same), a Clip of
    [0, 6] given as Constant nodes (relu6) and one with no max (relu),
    an ONNX node name that is not an identifier; no reference needed."""
    rng = np.random.RandomState(3)
    nodes, inits = tail("c2", rng)
    inits += [numpy_helper.from_array(f32(rng, 4, 1, 3, 3), "relu1.weight"),
              numpy_helper.from_array(f32(rng, 4), "relu1.bias"),
              numpy_helper.from_array(f32(rng, 1, 4, 3, 3), "a.weight"),
              numpy_helper.from_array(f32(rng, 1), "b.bias")]
    consts = [helper.make_node("Constant", [], ["lo"], name="lo",
                               value=numpy_helper.from_array(np.array(0, dtype=np.float32))),
              helper.make_node("Constant", [], ["hi"], name="hi",
                               value=numpy_helper.from_array(np.array(6, dtype=np.float32)))]
    nodes = consts + [
        helper.make_node("Relu", ["x"], ["r"], name="first relu"),
        helper.make_node("Conv", ["r", "relu1.weight", "relu1.bias"], ["c1"], name="/stem/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["c1a"], name="/stem/Clip"),
        helper.make_node("Conv", ["c1a", "a.weight", "b.bias"], ["c2p"], name="9conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2p", "lo"], ["c2"], name="clip_min_only")] + nodes
    m = model_of(nodes, [x_input()], [logits_output()], inits, name="names")
    onnx.checker.check_model(m)
    path = os.path.join(HERE, "names.onnx")
    save_model(path, m)
    print("== names: %d bytes" % os.path.getsize(path))


def tail(src, rng, elem=TensorProto.FLOAT, opset=OPSET):
    """src [N,1,28,28] -> MaxPool 7x7/7 -> Flatten -> Gemm(transB=1) ->
    logits [N,10]: small initializers (fc.weight [10,16], fc.bias [10])."""
    dt = np.float64 if elem == TensorProto.DOUBLE else np.float32
    inits = [numpy_helper.from_array((rng.standard_normal((10, 16)) * 0.2).astype(dt), "fc.weight"),
             numpy_helper.from_array((rng.standard_normal(10) * 0.2).astype(dt), "fc.bias")]
    gemm = {"transB": 1} if opset >= 7 else {"transB": 1, "broadcast": 1}
    nodes = [helper.make_node("MaxPool", [src], ["pool"], name="maxpool", kernel_shape=[7, 7], strides=[7, 7]),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", **gemm)]
    return nodes, inits


def make_error_files():
    """Each a minimal model around one defect (otherwise valid, checked with
    onnx.checker where the defect allows it)."""
    files = {}
    rng = np.random.RandomState(2)

    # an op nncc does not support (Erf) on the input
    nodes, inits = tail("erf", rng)
    files["bad_op"] = model_of([helper.make_node("Erf", ["x"], ["erf"], name="erf")] + nodes,
                               [x_input()], [logits_output()], inits, name="bad_op")

    # Conv with auto_pad=SAME_UPPER (explicit pads only)
    nodes, inits = tail("conv", rng)
    inits.append(numpy_helper.from_array(f32(rng, 1, 1, 3, 3), "conv.weight"))
    files["bad_autopad"] = model_of(
        [helper.make_node("Conv", ["x", "conv.weight"], ["conv"], name="conv", kernel_shape=[3, 3],
                          auto_pad="SAME_UPPER")] + nodes,
        [x_input()], [logits_output()], inits, name="bad_autopad")

    # a DOUBLE input (and so, for a valid model, double initializers and output)
    nodes, inits = tail("x", rng, elem=TensorProto.DOUBLE)
    files["bad_dtype"] = model_of(nodes, [x_input(TensorProto.DOUBLE)], [logits_output(TensorProto.DOUBLE)],
                                  inits, name="bad_dtype")

    # two graph outputs: logits and the flattened features
    nodes, inits = tail("x", rng)
    files["two_outputs"] = model_of(nodes, [x_input()],
                                    [logits_output(), helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", 16])],
                                    inits, name="two_outputs")

    # fc.weight stored outside the file, in weights.bin (not shipped)
    nodes, inits = tail("x", rng)
    w = inits[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(10 * 16 * 4))):
        e = w.external_data.add()
        e.key, e.value = k, v
    files["external_data"] = model_of(nodes, [x_input()], [logits_output()], inits, name="external_data")

    # opset 6 (Gemm-6 needs broadcast=1 for its [10] bias)
    nodes, inits = tail("x", rng, opset=6)
    files["bad_opset"] = model_of(nodes, [x_input()], [logits_output()], inits, opset=6, name="bad_opset")

    # a pooling window that does not fit (7x7 on the 4x4 of a first 7x7
    # pool): the front end's shape error, on the .nn text import made
    nodes, inits = tail("p1", np.random.RandomState(4))
    files["bad_shape"] = model_of(
        [helper.make_node("MaxPool", ["x"], ["p1"], name="pool1", kernel_shape=[7, 7], strides=[7, 7])] + nodes,
        [x_input()], [logits_output()], inits, name="bad_shape")

    # Conv with pads [1, 1, 0, 0]: the odd pixel at the top/left (SAME_LOWER),
    # which nncc's padding="same" does not do (the bottom/right, as PyTorch)
    rng5 = np.random.RandomState(5)  # its own, so the files above keep their bytes
    nodes, inits = tail("conv", rng5)
    inits.append(numpy_helper.from_array(f32(rng5, 1, 1, 2, 2), "conv.weight"))
    files["bad_pads"] = model_of(
        [helper.make_node("Conv", ["x", "conv.weight"], ["conv"], name="conv", kernel_shape=[2, 2],
                          pads=[1, 1, 0, 0])] + nodes,
        [x_input()], [logits_output()], inits, name="bad_pads")

    print("== error files")
    for name, m in files.items():
        try:
            onnx.checker.check_model(m)
            verdict = "passes onnx.checker"
        except onnx.checker.ValidationError as e:
            verdict = "fails onnx.checker: " + str(e).splitlines()[0]
        path = os.path.join(HERE, name + ".onnx")
        save_model(path, m)
        print("  %s.onnx: %d bytes, %s" % (name, os.path.getsize(path), verdict))
        if name != "external_data" and verdict != "passes onnx.checker":
            fail(name + ": " + verdict)

    with open(os.path.join(HERE, "mnist_cnn.onnx"), "rb") as f:
        head = f.read(100)
    for name, data in (("truncated", head), ("garbage", b"\xff" * 64)):
        with open(os.path.join(HERE, name + ".onnx"), "wb") as f:
            f.write(data)
        try:
            onnx.load_from_string(data)
        except Exception:  # google.protobuf.message.DecodeError
            pass
        else:
            fail(name + ".onnx parses")
        print("  %s.onnx: %d bytes" % (name, len(data)))


def main():
    torch.set_num_threads(1)
    gen_ref.HERE = HERE  # gen_ref.generate writes into gen_ref.HERE
    for m in MODELS:
        make(*m)
    make_dropout_gemm()
    make_names()
    make_error_files()


if __name__ == "__main__":
    main()
