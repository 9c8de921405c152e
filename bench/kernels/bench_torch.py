"""PyTorch 1.13 (oneDNN) timings of the same ops as bench_kernels.c.

Prints: net layer op gflop seconds (tab-separated), like bench_kernels.
Run with Debian's /usr/bin/python3 (the one with torch), via run.sh.
"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.set_grad_enabled(False)

CONVS = {
    "mnist": [("conv1", 256, 1, 28, 16, 5, 0), ("conv2", 256, 16, 24, 32, 5, 0),
              ("conv3", 256, 32, 10, 64, 5, 0)],
    "vgg16": [("c1_1", 64, 1, 32, 64, 3, 1), ("c1_2", 64, 64, 32, 64, 3, 1),
              ("c2_1", 64, 64, 16, 128, 3, 1), ("c2_2", 64, 128, 16, 128, 3, 1),
              ("c3_1", 64, 128, 8, 256, 3, 1), ("c3_2", 64, 256, 8, 256, 3, 1),
              ("c4_1", 64, 256, 4, 512, 3, 1), ("c4_2", 64, 512, 4, 512, 3, 1),
              ("c5_1", 64, 512, 2, 512, 3, 1)],
}
LINEARS = {
    "mnist": [("fc1", 256, 576, 100), ("fc2", 256, 100, 10)],
    "vgg16": [("fc6", 64, 512, 4096), ("fc7", 64, 4096, 4096), ("fc8", 64, 4096, 10)],
}


def best_time(fn):
    fn()
    best, start, r = 1e30, time.perf_counter(), 0
    while r < 20 and (r < 3 or time.perf_counter() - start < 0.5):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        r += 1
    return best


def report(net, layer, op, flop, t):
    print(f"{net}\t{layer}\t{op}\t{flop * 1e-9:.6f}\t{t:.6e}", flush=True)


def conv(net, name, n, ci, h, co, k, p):
    x, w, b = torch.randn(n, ci, h, h), torch.randn(co, ci, k, k), torch.randn(co)
    y = F.conv2d(x, w, b, padding=p)
    dy = torch.randn_like(y)
    flop = 2.0 * n * co * y.shape[2] * y.shape[3] * ci * k * k
    cb = torch.ops.aten.convolution_backward
    args = (dy, x, w, [co], [1, 1], [p, p], [1, 1], False, [0, 0], 1)
    report(net, name, "fwd", flop, best_time(lambda: F.conv2d(x, w, b, padding=p)))
    report(net, name, "bwd_data", flop, best_time(lambda: cb(*args, [True, False, False])))
    report(net, name, "bwd_weight", flop, best_time(lambda: cb(*args, [False, True, True])))


def linear(net, name, n, i, o):
    x, w, b = torch.randn(n, i), torch.randn(o, i), torch.randn(o)
    dy = torch.randn(n, o)
    flop = 2.0 * n * i * o
    report(net, name, "fwd", flop, best_time(lambda: F.linear(x, w, b)))
    report(net, name, "bwd_data", flop, best_time(lambda: dy @ w))
    report(net, name, "bwd_weight", flop, best_time(lambda: (dy.t() @ x, dy.sum(0))))


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    for net in ("mnist", "vgg16"):
        if only and only != net:
            continue
        for c in CONVS[net]:
            conv(net, *c)
        for l in LINEARS[net]:
            linear(net, *l)


main()
