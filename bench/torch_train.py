#!/usr/bin/python3
"""PyTorch 1.13 side of bench/train.sh: train the same architecture as an
nncc model on the same MNIST IDX files and print one JSON line with the
training throughput.

usage: /usr/bin/python3 bench/torch_train.py MODEL --data DIR [--threads T]
           [--warmup W] [--steps N] [--lr X]
MODEL is mnist_cnn (batch 256, 28x28) or vgg16 (batch 64, 28x28 zero-padded
to 32x32).  Only the N steps after the W warm-up steps are timed; the data
set is read once, before any timing, into a uint8 tensor (as the nncc
runtime does), and each step gathers its batch and scales it by 1/255 (as
the runtime's batch_fill does), so both sides time the same work:
batch -> forward -> cross-entropy -> backward -> Adam.
Peak RSS is measured from outside (bench/train.sh runs this under
/usr/bin/time).  Not a test: timings never go in tests.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

# name: (batch, canvas side, Adam lr) -- the same as models/<name>.nn
MODELS = {"mnist_cnn": (256, 28, 0.0002), "vgg16": (64, 32, 0.0001)}
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def mnist_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(576, 100), nn.ReLU(), nn.Linear(100, 10))


def vgg16():
    """torchvision's make_layers(cfg 'D') with in_channels=1, then the
    MNIST classifier of models/lib/vgg.nn (no dropout)."""
    layers, c = [], 1
    for v in CFG_D:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(512, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 10))


def read_idx(path, magic):
    """An IDX file as a numpy uint8 array (raw file; the bench writes raw)."""
    with open(path, "rb") as f:
        data = f.read()
    got, n = struct.unpack(">II", data[:8])
    if got != magic:
        sys.exit(f"torch_train.py: {path}: bad magic {got:#010x}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, n, 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    batch, side, lr = MODELS[a.model]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    images = torch.from_numpy(read_idx(os.path.join(a.data, "train-images-idx3-ubyte"), 0x803).copy())
    labels = torch.from_numpy(read_idx(os.path.join(a.data, "train-labels-idx1-ubyte"), 0x801).astype(np.int64))
    n, h, w = images.shape
    if n < batch:
        sys.exit(f"torch_train.py: {a.data}: {n} images, fewer than one batch of {batch}")
    top, left = (side - h) // 2, (side - w) // 2
    per_epoch = n // batch  # drop_last, as the runtime

    model = mnist_cnn() if a.model == "mnist_cnn" else vgg16()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.zeros(batch, 1, side, side)  # the zero canvas, filled in place
    gen = torch.Generator().manual_seed(a.seed)
    order, k = torch.randperm(n, generator=gen), 0
    fwd = bwd = upd = 0.0

    def step(timed):
        nonlocal order, k, fwd, bwd, upd
        if k == per_epoch:
            order, k = torch.randperm(n, generator=gen), 0
        idx = order[k * batch:(k + 1) * batch]
        k += 1
        t0 = time.perf_counter()
        x[:, 0, top:top + h, left:left + w] = images[idx].float() / 255.0
        y = labels[idx]
        loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if timed:
            fwd += t1 - t0
            bwd += t2 - t1
            upd += t3 - t2
        return loss.item()

    for _ in range(a.warmup):
        step(False)
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step(True)
    secs = time.perf_counter() - start
    print(json.dumps({
        "model": a.model, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch": batch, "warmup": a.warmup, "steps": a.steps, "seconds": round(secs, 4),
        "img_per_s": round(a.steps * batch / secs, 1),
        "ms_forward": round(1e3 * fwd / a.steps, 2), "ms_backward": round(1e3 * bwd / a.steps, 2),
        "ms_adam": round(1e3 * upd / a.steps, 2), "last_loss": loss}))


if __name__ == "__main__":
    main()
