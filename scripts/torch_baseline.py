#!/usr/bin/python3
"""PyTorch 1.13 baselines for the small classic models in models/: each
model's PyTorch twin (tests/ref/gen_ref.py, with state_dict names equal to
nncc's parameter names) trained as nncc's trainer trains the .nn file --
same input padding, batch size, Adam learning rate and epochs, seed 1,
a fresh shuffle each epoch and the last partial batch dropped -- then
evaluated in eval mode on the 10,000 test images.

    /usr/bin/python3 scripts/torch_baseline.py [--data data/mnist] [--epochs 2] [MODEL...]

Prints one line per model: name, parameters, forward MFLOPs per image
(conv2d and linear only, a multiply-add counted as 2 as `nncc --dump-ir`
does), test accuracy and the training seconds, on 2 threads.  Dropout uses
PyTorch's own generator, so the numbers are comparable with nncc's, not
equal to them.
"""
import argparse
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import gen_ref  # noqa: E402  (the twins)

MODELS = {
    "lenet5": gen_ref.Lenet5,
    "alexnet_mini": gen_ref.AlexnetMini,
    "mobilenetv2_mini": gen_ref.Mobilenetv2Mini,
    "squeezenet_mini": gen_ref.SqueezenetMini,
    "densenet_mini": gen_ref.DensenetMini,
    "inception_mini": gen_ref.InceptionMini,
}


def read_idx(path):
    """An IDX file (ubyte data) as a numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data, split):
    images = read_idx(os.path.join(data, split + "-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data, split + "-labels-idx1-ubyte"))
    return images, labels


def forward_flops(model, x):
    """conv2d and linear FLOPs of one image's forward pass (2 per
    multiply-add, 1 per output for the bias), via forward hooks."""
    total = [0]

    def hook(m, inp, out):
        per_out = m.weight[0].numel() * 2 + (m.bias is not None)
        total[0] += out[0].numel() * per_out

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    return total[0]


def run(name, cls, train, test, epochs):
    torch.manual_seed(1)
    model = cls()
    params = sum(p.numel() for p in model.parameters())
    x, y = gen_ref.to_batch(*train, cls.pad)
    tx, ty = gen_ref.to_batch(*test, cls.pad)
    flops = forward_flops(model, tx)
    opt = torch.optim.Adam(model.parameters(), lr=cls.lr)
    gen = torch.Generator().manual_seed(1)
    steps = len(x) // cls.batch
    start = time.time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for k in range(steps):
            idx = order[k * cls.batch:(k + 1) * cls.batch]
            opt.zero_grad()
            loss = gen_ref.xent(cls, model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    seconds = time.time() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(tx), 1000):
            correct += (model(tx[k:k + 1000]).argmax(1) == ty[k:k + 1000]).sum().item()
    print("%-18s params %7d  fwd %6.2f MFLOP/image  test_acc %.4f  (%d/%d)  %6.1f s"
          % (name, params, flops / 1e6, correct / len(tx), correct, len(tx), seconds), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("models", nargs="*", help="default: all of " + ", ".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for m in args.models:
        if m not in MODELS:
            ap.error("no model %s" % m)
    train, test = load(args.data, "train"), load(args.data, "t10k")
    for name in args.models or MODELS:
        run(name, MODELS[name], train, test, args.epochs)


if __name__ == "__main__":
    main()
