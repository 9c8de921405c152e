#!/usr/bin/python3
"""The seed's mnist_cnn training in PyTorch 1.13, for comparing test
accuracy with nncc's trainer: batch 256, shuffled, drop_last, Adam lr
0.0002, 10 epochs, the whole test set evaluated after each epoch.

usage: /usr/bin/python3 bench/torch_accuracy.py --data data/mnist --seed S
           [--epochs 10] [--threads 1]
Prints one JSON line per epoch: {"epoch", "loss", "test_acc"}.  Compare
with `generated/mnist_cnn train --data data/mnist --seed S --log F.jsonl`
(seeds are not shared: the spread over seeds is what compares).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import mnist_cnn  # noqa: E402  (the same architecture)


def idx(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, n = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if magic == 0x803:
        return np.frombuffer(data, np.uint8, n * 784, 16).reshape(n, 1, 28, 28)
    return np.frombuffer(data, np.uint8, n, 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xs = torch.from_numpy(idx(os.path.join(a.data, "train-images-idx3-ubyte")).copy())
    ys = torch.from_numpy(idx(os.path.join(a.data, "train-labels-idx1-ubyte")).astype(np.int64))
    xt = torch.from_numpy(idx(os.path.join(a.data, "t10k-images-idx3-ubyte")).copy()).float() / 255
    yt = torch.from_numpy(idx(os.path.join(a.data, "t10k-labels-idx1-ubyte")).astype(np.int64))
    model = mnist_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.0002)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(len(xs))
        total, steps = 0.0, len(xs) // 256
        for s in range(steps):
            i = order[s * 256:(s + 1) * 256]
            opt.zero_grad()
            loss = loss_fn(model(xs[i].float() / 255), ys[i])
            loss.backward()
            opt.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            correct = sum((model(xt[j:j + 1000]).argmax(1) == yt[j:j + 1000]).sum().item()
                          for j in range(0, len(xt), 1000))
        print(json.dumps({"epoch": epoch, "loss": total / steps, "test_acc": correct / len(xt)}), flush=True)


if __name__ == "__main__":
    main()
