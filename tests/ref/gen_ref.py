#!/usr/bin/python3
"""PyTorch 1.13 reference files for tests/ref/run_ref.sh.

Regenerate (from the repository root, with Debian's python, the one that has
torch; the test itself does not need PyTorch):

    /usr/bin/python3 tests/ref/gen_ref.py

For each model in MODELS it writes, into tests/ref/:

  data_<model>/{train,t10k}-{images-idx3,labels-idx1}-ubyte
      a synthetic MNIST-like IDX data set: exactly one training batch of
      28x28 images (pseudo-random pixels, about half of them zero, and
      labels from a seeded numpy generator) and a few test images;
  <model>.init.safetensors
      the starting state_dict (PyTorch's default init under a fixed
      torch.manual_seed; batch-norm weights, biases and running statistics
      are then drawn away from 1/0 so that a kernel ignoring them fails);
      no metadata, so nncc loads it as step 0 with the model's defaults;
  <model>.ref.safetensors
      `loss` (F32 scalar) and `logits` of a training-mode forward pass on the
      batch, the gradient of every parameter under its own name
      (nn.CrossEntropyLoss, mean), each of these with `noise.<name>`: the
      largest difference between that float32 result and the same
      computation in float64 (compare.c uses it as a floor for tensors that
      are zero in exact arithmetic, such as the bias of a convolution that
      feeds a batch norm);
      `losses`: the batch loss at each of STEPS torch.optim.Adam steps (the
      model's lr, default betas and eps; the optim_* models: their own
      optimizer, learning-rate schedule and gradient clipping), the test set
      evaluated in eval mode
      after every step as nncc's trainer does after every (one-batch) epoch;
      `test_loss`: the eval-mode loss of the starting state on the test set;
  <model>.step1.safetensors (models with batch norm only)
      the batch-norm buffers after the first training step (running
      statistics, num_batches_tracked).

Models with dropout use nncc's masks (a hash of the trainer's seed, the step,
the node's name and the element; class Dropout), so that the training-mode
passes agree; a model's label_smoothing applies to every loss here, as in
nncc's runtime.  `gen_ref.py MODEL...` regenerates only those models.

The modules' state_dict names are nncc's parameter names (see
`build/dev/nncc --dump-ir tests/ref/vgg_tiny_bn.nn`).  Nothing here checks
them, but the trainer refuses a checkpoint with a missing, extra or
mis-shaped tensor and compare.c a missing or extra gradient, so a naming
mistake fails the test loudly.
"""
import json
import os
import struct
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 10
# The six models of models/ (batch 64, up to a few million activations)
# always hold values within 1e-8 of a kink (a ReLU at 0, a ReLU6 at 6), so
# a decision flip between PyTorch's float32 and nncc's is a matter of when:
# after one, two trajectories part by 1e-4 within a few Adam steps.  Their
# references keep the first two steps (one Adam update checked against
# PyTorch's); the small models keep ten.  compare.c explains flips.
FEW_STEPS = 2
TRAIN_SEED = 1  # every model's `train ... seed=1`: nncc's dropout masks use it


class MnistCnn(nn.Module):
    """models/mnist_cnn.nn"""

    batch, pad, lr = 256, 0, 0.0002  # as the .nn file's input and train lines

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.conv3 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(576, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        h = F.relu(self.fc1(torch.flatten(h, 1)))
        return self.fc2(h)


class Features(nn.Module):
    """models/lib/vgg.nn's features(h, cfg, bn=true): conv, bn, relu per
    number, a 2x2 max-pool per 'M'; nncc numbers convs, bns and pools
    separately inside the block (features1.conv2, features1.bn2, ...)."""

    def __init__(self, cfg, c):
        super().__init__()
        self.cfg = cfg
        k = 0
        for v in cfg:
            if v != "M":
                k += 1
                setattr(self, "conv%d" % k, nn.Conv2d(c, v, 3, padding=1))
                setattr(self, "bn%d" % k, nn.BatchNorm2d(v))
                c = v

    def forward(self, h):
        k = 0
        for v in self.cfg:
            if v == "M":
                h = F.max_pool2d(h, 2)
            else:
                k += 1
                h = getattr(self, "conv%d" % k)(h)
                h = F.relu(getattr(self, "bn%d" % k)(h))
        return h


class VggTinyBn(nn.Module):
    """tests/ref/vgg_tiny_bn.nn"""

    batch, pad, lr = 16, 2, 0.001  # as the .nn file's input and train lines

    def __init__(self):
        super().__init__()
        self.features1 = Features([8, "M", 16, "M", 16, "M"], 1)
        self.fc1 = nn.Linear(256, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        h = torch.flatten(self.features1(x), 1)
        return self.fc2(F.relu(self.fc1(h)))


# ---- the new ops' models (models/*.nn) and op tests (tests/ref/ops_*.nn) ----
#
# Each module's attribute names are nncc's node names, so its state_dict
# names are nncc's parameter names: per scope, conv2d -> conv1, conv2, ...,
# linear -> fc1, ..., batchnorm1d/2d -> bn1, ...; a block call's nodes sit
# under the block's name and call number (fire2.conv3).  A class may set
# `smoothing` (cross_entropy's label_smoothing, default 0) and `pad` as
# (top, left, H, W) for mnist(pad=[top, left]) on an HxW input.

MASK64 = (1 << 64) - 1


def hash64(x):
    """nncc_hash64 (runtime/nncc_rt.h, splitmix64's finalizer) of a python
    int or a numpy uint64 array (whose arithmetic wraps mod 2^64)."""
    if isinstance(x, int):
        x = (x + 0x9E3779B97F4A7C15) & MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
        return x ^ (x >> 31)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Dropout(nn.Module):
    """nncc's dropout(p) named `name`.  With `step` None it is F.dropout
    (scripts/torch_baseline.py).  With `seed` and `step` set (set_step) the
    mask is nncc's, a function of (the trainer's seed, the step, the node's
    name, the element) (nk_dropout_keep in runtime/nncc_kernels.h; the
    stream is FNV-1a of the name, as compiler/emit_c.c hashes it), so that
    the reference's training-mode passes drop the elements nncc drops."""

    def __init__(self, name, p=0.5):
        super().__init__()
        self.name, self.p, self.seed, self.step = name, p, None, None

    def keep(self, n):
        stream = 1469598103934665603
        for c in self.name.encode():
            stream = ((stream ^ c) * 1099511628211) & MASK64
        key = hash64(self.seed ^ hash64(self.step ^ hash64(stream)))
        with np.errstate(over="ignore"):
            bits = hash64(np.uint64(key) + np.arange(n, dtype=np.uint64)) >> np.uint64(40)
        return torch.from_numpy(bits >= np.uint64(int(self.p * 16777216.0)))

    def forward(self, x):
        if not self.training or self.step is None:
            return F.dropout(x, self.p, self.training)
        scale = float(np.float32(1.0 / (1.0 - self.p)))  # nncc's float scale
        keep = self.keep(x.numel()).view(x.shape)
        return torch.where(keep, x * scale, torch.zeros((), dtype=x.dtype))


def set_step(model, step, seed):
    for m in model.modules():
        if isinstance(m, Dropout):
            m.seed, m.step = seed, step


class Lenet5(nn.Module):
    """models/lenet5.nn"""

    batch, pad, lr, steps = 64, 2, 0.001, FEW_STEPS

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = nn.Linear(120, 84)
        self.fc2 = nn.Linear(84, 10)

    def forward(self, x):
        h = F.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        h = F.avg_pool2d(torch.tanh(self.conv2(h)), 2)
        h = torch.tanh(self.conv3(h))
        h = torch.tanh(self.fc1(torch.flatten(h, 1)))
        return self.fc2(h)


class AlexnetMini(nn.Module):
    """models/alexnet_mini.nn"""

    batch, pad, lr, steps = 64, 0, 0.001, FEW_STEPS

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 12, 5, padding=2)
        self.conv2 = nn.Conv2d(12, 32, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(32, 48, 3, padding=1)
        self.conv4 = nn.Conv2d(48, 48, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(48, 32, 3, padding=1, groups=2)
        self.dropout1 = Dropout("dropout1")
        self.fc1 = nn.Linear(128, 128)
        self.bn1 = nn.BatchNorm1d(128)
        self.dropout2 = Dropout("dropout2")
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 3, 2)
        h = F.relu(self.conv3(h))
        h = F.relu(self.conv4(h))
        h = F.adaptive_max_pool2d(F.relu(self.conv5(h)), 2)
        h = self.dropout1(torch.flatten(h, 1))
        h = self.dropout2(F.relu(self.bn1(self.fc1(h))))
        return self.fc3(F.relu(self.fc2(h)))


class InvertedResidual(nn.Module):
    """models/lib/mobilenetv2.nn's inverted_residual"""

    def __init__(self, inp, oup, stride, expand):
        super().__init__()
        hidden, k = inp * expand, 0
        self.expand, self.residual = expand != 1, stride == 1 and inp == oup
        layers = []
        if self.expand:
            layers.append(nn.Conv2d(inp, hidden, 1, bias=False))
        layers.append(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False))
        layers.append(nn.Conv2d(hidden, oup, 1, bias=False))
        for conv in layers:
            k += 1
            setattr(self, "conv%d" % k, conv)
            setattr(self, "bn%d" % k, nn.BatchNorm2d(conv.out_channels))
        self.n = k

    def forward(self, h):
        r = h
        for k in range(1, self.n + 1):
            r = getattr(self, "bn%d" % k)(getattr(self, "conv%d" % k)(r))
            if k < self.n:
                r = F.relu6(r)
        return h + r if self.residual else r


class Mobilenetv2Mini(nn.Module):
    """models/mobilenetv2_mini.nn"""

    batch, pad, lr, steps = 64, 0, 0.001, FEW_STEPS
    cfg = [[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 3, 2], [6, 32, 2, 1]]

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c, k = 16, 0
        for t, out, n, s in self.cfg:
            for i in range(n):
                k += 1
                setattr(self, "inverted_residual%d" % k, InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        self.blocks = k
        self.conv2 = nn.Conv2d(c, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.dropout1 = Dropout("dropout1", 0.2)
        self.fc1 = nn.Linear(128, 10)

    def forward(self, x):
        h = F.relu6(self.bn1(self.conv1(x)))
        for k in range(1, self.blocks + 1):
            h = getattr(self, "inverted_residual%d" % k)(h)
        h = F.relu6(self.bn2(self.conv2(h)))
        h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return self.fc1(self.dropout1(h))


class Fire(nn.Module):
    """models/lib/squeezenet.nn's fire"""

    def __init__(self, inp, squeeze, e1, e3):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, squeeze, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(squeeze)
        self.conv2 = nn.Conv2d(squeeze, e1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(e1)
        self.conv3 = nn.Conv2d(squeeze, e3, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(e3)

    def forward(self, h):
        s = F.relu(self.bn1(self.conv1(h)))
        return torch.cat([F.relu(self.bn2(self.conv2(s))), F.relu(self.bn3(self.conv3(s)))], 1)


class SqueezenetMini(nn.Module):
    """models/squeezenet_mini.nn"""

    batch, pad, lr, steps = 64, 0, 0.001, FEW_STEPS
    fires = [(4, 16, 16), (4, 16, 16), "M", (8, 32, 32), (8, 32, 32), "M",
             (12, 48, 48), (12, 48, 48), (16, 64, 64), (16, 64, 64)]

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        c, k = 16, 0
        for f in self.fires:
            if f != "M":
                k += 1
                setattr(self, "fire%d" % k, Fire(c, *f))
                c = f[1] + f[2]
        self.dropout1 = Dropout("dropout1")
        self.conv2 = nn.Conv2d(c, 10, 1)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, ceil_mode=True)
        k = 0
        for f in self.fires:
            if f == "M":
                h = F.max_pool2d(h, 3, 2, ceil_mode=True)
            else:
                k += 1
                h = getattr(self, "fire%d" % k)(h)
        h = F.relu(self.conv2(self.dropout1(h)))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)


class DenseLayer(nn.Module):
    """models/lib/densenet.nn's dense_layer"""

    def __init__(self, inp, growth, bn_size=4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv1 = nn.Conv2d(inp, bn_size * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, h):
        r = self.conv1(F.relu(self.bn1(h)))
        r = self.conv2(F.relu(self.bn2(r)))
        return torch.cat([h, r], 1)


class DenseBlock(nn.Module):
    """models/lib/densenet.nn's dense_block"""

    def __init__(self, inp, layers, growth):
        super().__init__()
        for k in range(layers):
            setattr(self, "dense_layer%d" % (k + 1), DenseLayer(inp + k * growth, growth))
        self.layers = layers

    def forward(self, h):
        for k in range(self.layers):
            h = getattr(self, "dense_layer%d" % (k + 1))(h)
        return h


class Transition(nn.Module):
    """models/lib/densenet.nn's transition"""

    def __init__(self, inp, out):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv1 = nn.Conv2d(inp, out, 1, bias=False)

    def forward(self, h):
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(h))), 2)


class DensenetMini(nn.Module):
    """models/densenet_mini.nn"""

    batch, pad, lr, steps = 64, 2, 0.001, FEW_STEPS
    growth, layers = 8, 4

    def __init__(self):
        super().__init__()
        g, n = self.growth, self.layers
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.dense_block1 = DenseBlock(16, n, g)
        self.transition1 = Transition(16 + n * g, 24)
        self.dense_block2 = DenseBlock(24, n, g)
        self.transition2 = Transition(24 + n * g, 28)
        self.dense_block3 = DenseBlock(28, n, g)
        self.bn2 = nn.BatchNorm2d(28 + n * g)
        self.fc1 = nn.Linear(28 + n * g, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        h = self.transition1(self.dense_block1(h))
        h = self.transition2(self.dense_block2(h))
        h = self.dense_block3(h)
        h = torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn2(h)), 1), 1)
        return self.fc1(h)


class ConvBn(nn.Module):
    """models/lib/inception.nn's conv_bn (torchvision's BasicConv2d)"""

    def __init__(self, inp, out, kernel, padding=0, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, kernel, padding=padding, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out, eps=0.001)

    def forward(self, h):
        return F.relu(self.bn1(self.conv1(h)))


class Inception(nn.Module):
    """models/lib/inception.nn's inception"""

    def __init__(self, inp, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, pool="max"):
        super().__init__()
        self.pool = pool
        self.conv_bn1 = ConvBn(inp, c1, 1)
        self.conv_bn2 = ConvBn(inp, c3_reduce, 1)
        self.conv_bn3 = ConvBn(c3_reduce, c3, 3, padding="same")
        self.conv_bn4 = ConvBn(inp, c5_reduce, 1)
        self.conv_bn5 = ConvBn(c5_reduce, c5, 3, padding="same", dilation=2)
        self.conv_bn6 = ConvBn(inp, pool_proj, 1)

    def forward(self, h):
        b1 = self.conv_bn1(h)
        b2 = self.conv_bn3(self.conv_bn2(h))
        b3 = self.conv_bn5(self.conv_bn4(h))
        if self.pool == "max":
            p = F.max_pool2d(h, 3, 1, 1, ceil_mode=True)
        else:
            p = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
        return torch.cat([b1, b2, b3, self.conv_bn6(p)], 1)


class InceptionMini(nn.Module):
    """models/inception_mini.nn"""

    batch, pad, lr, smoothing, steps = 64, 0, 0.001, 0.1, FEW_STEPS

    def __init__(self):
        super().__init__()
        self.conv_bn1 = ConvBn(1, 48, 3, padding="same")
        self.inception1 = Inception(48, 16, 24, 32, 4, 8, 8)
        self.inception2 = Inception(64, 32, 32, 48, 8, 24, 16)
        self.inception3 = Inception(120, 48, 24, 52, 4, 12, 16, pool="avg")
        self.dropout1 = Dropout("dropout1", 0.2)
        self.fc1 = nn.Linear(128, 10)

    def forward(self, x):
        h = F.max_pool2d(self.conv_bn1(x), 3, 2, ceil_mode=True)
        h = self.inception2(self.inception1(h))
        h = F.max_pool2d(h, 3, 2, ceil_mode=True)
        h = torch.flatten(F.adaptive_avg_pool2d(self.inception3(h), 1), 1)
        return self.fc1(self.dropout1(h))


class OpsAct(nn.Module):
    """tests/ref/ops_act.nn"""

    batch, pad, lr = 8, 0, 0.001

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 4, 2, 1)
        self.conv2 = nn.Conv2d(4, 6, 3, 2, 1)
        self.conv3 = nn.Conv2d(6, 6, 1)
        self.fc1 = nn.Linear(216, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 16, bias=False)
        self.fc4 = nn.Linear(16, 16)
        self.fc5 = nn.Linear(16, 10)
        with torch.no_grad():  # so that each relu6 clips at 6 too (fc3: tanh near +-1)
            for layer, scale in ((self.conv1, 16), (self.conv2, 4), (self.fc3, 4), (self.fc4, 16)):
                layer.weight.mul_(scale)

    def forward(self, x):
        h = F.relu6(self.conv1(x))
        h = F.leaky_relu(self.conv2(h), 0.2)
        s = torch.sigmoid(self.conv3(h))
        t = torch.tanh(h)
        h = F.leaky_relu(s + t + h, -0.5)
        h = F.relu6(F.max_pool2d(h, 2, 1))
        g = F.leaky_relu(self.fc1(torch.flatten(h, 1)))
        g = torch.sigmoid(self.fc2(g))
        g = F.hardtanh(torch.tanh(self.fc3(g)), -0.5, 0.75)
        g = F.relu6(self.fc4(g))
        return self.fc5(g)


class OpsConv(nn.Module):
    """tests/ref/ops_conv.nn"""

    batch, pad, lr = 8, (2, 1, 31, 30), 0.001

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 4, 2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.conv4 = nn.Conv2d(16, 12, 1, groups=4)
        self.conv5 = nn.Conv2d(12, 12, 4, padding="same")
        self.conv6 = nn.Conv2d(12, 6, 3, dilation=2, groups=3)
        self.conv7 = nn.Conv2d(6, 6, 3, 2, padding="valid", dilation=(2, 1))
        self.conv8 = nn.Conv2d(6, 4, (2, 3), padding="same", dilation=(1, 2), groups=2, bias=False)
        self.fc1 = nn.Linear(48, 10)

    def forward(self, x):
        h = self.conv1(x)
        h = F.relu(self.conv2(h))
        h = F.relu6(self.conv4(self.conv3(h)))
        h = F.leaky_relu(self.conv6(self.conv5(h)), 0.1)
        h = self.conv8(self.conv7(h))
        return self.fc1(torch.flatten(h, 1))


class OpsPool(nn.Module):
    """tests/ref/ops_pool.nn"""

    batch, pad, lr = 8, 0, 0.001

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 2)
        self.conv2 = nn.Conv2d(4, 6, 1)
        self.conv3 = nn.Conv2d(6, 6, 1)
        self.conv4 = nn.Conv2d(6, 6, 2)
        self.fc1 = nn.Linear(6 * 6 + 6 * 4, 10)

    def forward(self, x):
        h = self.conv1(x)
        a = F.max_pool2d(h, 2, ceil_mode=True)
        b = F.avg_pool2d(h, 2, ceil_mode=True)
        c = F.avg_pool2d(h, 3, 2, 1, count_include_pad=False)
        h = self.conv2(a + b + c)
        a = F.max_pool2d(h, (4, 2), 2, 1, ceil_mode=True)
        b = F.avg_pool2d(h, (4, 2), 2, 1, ceil_mode=True)
        c = F.avg_pool2d(h, (4, 2), 2, 1, ceil_mode=True, count_include_pad=False)
        h = self.conv3(a + b + c)
        m = F.adaptive_max_pool2d(h, (3, 2))
        n = F.adaptive_max_pool2d(self.conv4(c), 2)
        return self.fc1(torch.cat([torch.flatten(m, 1), torch.flatten(n, 1)], 1))


class OpsGate(nn.Module):
    """tests/ref/ops_gate.nn"""

    batch, pad, lr = 8, 0, 0.001

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 8, 3)
        self.conv4 = nn.Conv2d(8, 8, 1)
        self.fc1 = nn.Linear(8 * 3 * 3, 10)
        with torch.no_grad():  # so that the relu6 clips at 6 too
            self.conv1.weight.mul_(16)

    def forward(self, x):
        h = F.max_pool2d(F.relu6(self.conv1(x)), 3, 1)
        h = F.max_pool2d(F.leaky_relu(self.conv2(h), 0.2), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 3, 2, 1)
        r = F.relu(self.conv4(h))
        h = F.max_pool2d(r, 2, ceil_mode=True) + F.avg_pool2d(r, 2, ceil_mode=True)
        return self.fc1(torch.flatten(h, 1))


class OpsMisc(nn.Module):
    """tests/ref/ops_misc.nn"""

    batch, pad, lr, smoothing = 16, 0, 0.001, 0.2

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 4, 4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.conv3 = nn.Conv2d(14, 2, 1)
        self.fc1 = nn.Linear(144, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 12, bias=False)
        self.bn2 = nn.BatchNorm1d(12, eps=0.001, momentum=0.3)
        self.fc3 = nn.Linear(32, 6)
        self.fc4 = nn.Linear(50, 10)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        a = self.conv2(h)
        b = F.max_pool2d(h, 3, 1, 1)
        h = torch.cat([a, h, a, b], 1)
        h = torch.cat([self.conv3(h), h], 1)
        f = torch.flatten(F.max_pool2d(h, 2), 1)
        g = F.relu(self.bn1(self.fc1(f)))
        g = torch.cat([self.bn2(self.fc2(g)), self.fc3(g), g], 1)
        return self.fc4(g)


class OptimNet(nn.Module):
    """The small network of tests/ref/optim_*.nn, whose train lines differ."""

    batch, pad, lr, smoothing = 16, 0, 0.01, 0.0

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 4, 4)
        self.fc1 = nn.Linear(196, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        h = torch.flatten(F.relu(self.conv1(x)), 1)
        return self.fc2(F.relu(self.fc1(h)))


class OptimAdamwClip(OptimNet):
    """tests/ref/optim_adamw_clip.nn: AdamW, clip_grad_norm_ (always active)"""

    def make_opt(self, params):
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.5, foreach=False)

    def clip(self, params):
        torch.nn.utils.clip_grad_norm_(params, 0.2)


class OptimSgdNesterov(OptimNet):
    """tests/ref/optim_sgd_nesterov.nn: SGD with Nesterov momentum and weight
    decay, clip_grad_value_"""

    lr = 0.05

    def make_opt(self, params):
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=0.01,
                               foreach=False)

    def clip(self, params):
        torch.nn.utils.clip_grad_value_(params, 0.02)


class OptimCosineWarmup(OptimNet):
    """tests/ref/optim_cosine_warmup.nn: Adam, a linear warm-up, then cosine
    annealing (SequentialLR), stepped per epoch (here one step each)"""

    lr = 0.02

    def make_sched(self, opt):
        S = torch.optim.lr_scheduler
        return S.SequentialLR(opt, [S.LinearLR(opt, 0.2, total_iters=3),
                                    S.CosineAnnealingLR(opt, 5, 1e-4)], [3])


class OptimOnecycle(OptimNet):
    """tests/ref/optim_onecycle.nn: AdamW under OneCycleLR, which also cycles
    beta1, stepped per step"""

    lr = 0.001

    def make_opt(self, params):
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.05, foreach=False)

    def make_sched(self, opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=10, pct_start=0.4)


# name, module, seed, test images
MODELS = [("mnist_cnn", MnistCnn, 1, 10), ("vgg_tiny_bn", VggTinyBn, 2, 10),
          ("lenet5", Lenet5, 3, 10), ("alexnet_mini", AlexnetMini, 4, 10),
          ("mobilenetv2_mini", Mobilenetv2Mini, 5, 10), ("squeezenet_mini", SqueezenetMini, 6, 10),
          ("densenet_mini", DensenetMini, 7, 10), ("inception_mini", InceptionMini, 8, 10),
          ("ops_act", OpsAct, 9, 10), ("ops_conv", OpsConv, 10, 10),
          ("ops_pool", OpsPool, 11, 10), ("ops_misc", OpsMisc, 12, 10),
          ("optim_adamw_clip", OptimAdamwClip, 13, 10),
          ("optim_sgd_nesterov", OptimSgdNesterov, 14, 10),
          ("optim_cosine_warmup", OptimCosineWarmup, 15, 10),
          ("optim_onecycle", OptimOnecycle, 16, 10), ("ops_gate", OpsGate, 17, 10)]


def write_idx(path, magic, dims, data):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in dims:
            f.write(struct.pack(">I", d))
        f.write(data.astype(np.uint8).tobytes())


def make_split(rng, n):
    """n MNIST-like 28x28 images (uint8, about half zero) and labels."""
    pixels = rng.randint(0, 256, size=(n, 28, 28))
    pixels[rng.random_sample((n, 28, 28)) < 0.5] = 0
    return pixels.astype(np.uint8), rng.randint(0, 10, size=n).astype(np.uint8)


def write_dataset(d, rng, ntrain, ntest):
    os.makedirs(d, exist_ok=True)
    out = {}
    for split, n in (("train", ntrain), ("t10k", ntest)):
        images, labels = make_split(rng, n)
        write_idx(os.path.join(d, split + "-images-idx3-ubyte"), 0x803, (n, 28, 28), images)
        write_idx(os.path.join(d, split + "-labels-idx1-ubyte"), 0x801, (n,), labels)
        out[split] = images, labels
    return out


def to_batch(images, labels, pad):
    """As nncc's runtime: x/255 (in float32), zero-padded by pad on each side,
    or for pad = (top, left, H, W) placed at (top, left) of HxW."""
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
    if not isinstance(pad, int):
        top, left, h, w = pad
        return F.pad(x, (left, w - 28 - left, top, h - 28 - top)), torch.from_numpy(labels.astype(np.int64))
    return F.pad(x, (pad, pad, pad, pad)), torch.from_numpy(labels.astype(np.int64))


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor); F32, or I64 for integer tensors."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.int64:
            dtype, raw = "I64", t.numpy().astype("<i8").tobytes()
        else:
            dtype, raw = "F32", t.float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def perturb_batchnorm(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(0.2 * torch.rand(m.running_mean.shape, generator=gen) - 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def xent(cls, logits, y):
    """The model's cross_entropy (label_smoothing as its .nn file says)."""
    return F.cross_entropy(logits, y, label_smoothing=getattr(cls, "smoothing", 0.0))


def grads(cls, state, x, y, dtype):
    """Training-mode forward, loss and backward in dtype on a fresh copy of
    state (so that the running statistics it updates go nowhere), with the
    dropout masks of nncc's step 0 (its `grads`)."""
    probe = cls().to(dtype)
    probe.load_state_dict(state)
    probe.train()
    set_step(probe, 0, TRAIN_SEED)
    logits = probe(x.to(dtype))
    loss = xent(cls, logits, y)
    loss.backward()
    return [("loss", loss), ("logits", logits)] + [(n, p.grad) for n, p in probe.named_parameters()]


def buffers(model):
    return [(n, b) for n, b in model.state_dict().items() if "running_" in n or "num_batches" in n]


def generate(name, cls, seed, ntest):
    torch.manual_seed(seed)
    model = cls()
    perturb_batchnorm(model, torch.Generator().manual_seed(seed))
    rng = np.random.RandomState(seed)
    data = write_dataset(os.path.join(HERE, "data_" + name), rng, cls.batch, ntest)
    x, y = to_batch(*data["train"], cls.pad)
    tx, ty = to_batch(*data["t10k"], cls.pad)
    write_safetensors(os.path.join(HERE, name + ".init.safetensors"), list(model.state_dict().items()))

    out = grads(cls, model.state_dict(), x, y, torch.float32)
    exact = dict(grads(cls, model.state_dict(), x, y, torch.float64))
    out += [("noise." + n, (t.double() - exact[n]).abs().max()) for n, t in out]
    model.eval()
    with torch.no_grad():
        out.append(("test_loss", xent(cls, model(tx), ty)))

    # STEPS steps on the same batch (the data set is one batch, so each step
    # is one epoch), each followed by the trainer's eval-mode test pass.
    # Adam with the model's lr, unless the model says otherwise (optim_*)
    params = list(model.parameters())
    opt = model.make_opt(params) if hasattr(model, "make_opt") else torch.optim.Adam(params, lr=cls.lr)
    sched = model.make_sched(opt) if hasattr(model, "make_sched") else None
    losses, test_losses = [], []
    steps = getattr(cls, "steps", STEPS)
    for step in range(steps):
        model.train()
        set_step(model, step, TRAIN_SEED)
        opt.zero_grad()
        step_loss = xent(cls, model(x), y)
        step_loss.backward()
        if hasattr(model, "clip"):
            model.clip(params)
        opt.step()
        if sched and step < steps - 1:
            sched.step()  # per epoch, and every epoch here is one step
        losses.append(step_loss.item())
        if len(losses) == 1 and buffers(model):
            write_safetensors(os.path.join(HERE, name + ".step1.safetensors"), buffers(model))
        model.eval()
        with torch.no_grad():
            test_losses.append(xent(cls, model(tx), ty).item())
    out.append(("losses", torch.tensor(losses, dtype=torch.float32)))
    write_safetensors(os.path.join(HERE, name + ".ref.safetensors"), out)
    print("%s: loss %.6f -> %.6f after %d Adam steps (test loss %.6f -> %.6f)"
          % (name, losses[0], losses[-1], steps, test_losses[0], test_losses[-1]))


def main():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", "Using padding='same' with even kernel")  # ops_conv: it is the point
    only = sys.argv[1:]
    unknown = set(only) - {m[0] for m in MODELS}
    if unknown:
        sys.exit("gen_ref.py: no model %s" % ", ".join(sorted(unknown)))
    for name, cls, seed, ntest in MODELS:
        if not only or name in only:
            generate(name, cls, seed, ntest)


if __name__ == "__main__":
    main()
