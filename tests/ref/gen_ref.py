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
      model's lr, default betas and eps), the test set evaluated in eval mode
      after every step as nncc's trainer does after every (one-batch) epoch;
      `test_loss`: the eval-mode loss of the starting state on the test set;
  <model>.step1.safetensors (models with batch norm only)
      the batch-norm buffers after the first training step (running
      statistics, num_batches_tracked).

The modules' state_dict names are nncc's parameter names (see
`build/dev/nncc --dump-ir tests/ref/vgg_tiny_bn.nn`).  Nothing here checks
them, but the trainer refuses a checkpoint with a missing, extra or
mis-shaped tensor and compare.c a missing or extra gradient, so a naming
mistake fails the test loudly.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 10


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


# name, module, seed, test images
MODELS = [("mnist_cnn", MnistCnn, 1, 10), ("vgg_tiny_bn", VggTinyBn, 2, 10)]


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
    """As nncc's runtime: x/255 (in float32), zero-padded by pad on each side."""
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
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
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(0.2 * torch.rand(m.running_mean.shape, generator=gen) - 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def grads(cls, state, x, y, dtype):
    """Training-mode forward, loss and backward in dtype on a fresh copy of
    state (so that the running statistics it updates go nowhere)."""
    probe = cls().to(dtype)
    probe.load_state_dict(state)
    probe.train()
    logits = probe(x.to(dtype))
    loss = F.cross_entropy(logits, y)
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
        out.append(("test_loss", F.cross_entropy(model(tx), ty)))

    # STEPS steps on the same batch (the data set is one batch, so each step
    # is one epoch), each followed by the trainer's eval-mode test pass.
    opt = torch.optim.Adam(model.parameters(), lr=cls.lr)
    losses, test_losses = [], []
    for _ in range(STEPS):
        model.train()
        opt.zero_grad()
        step_loss = F.cross_entropy(model(x), y)
        step_loss.backward()
        opt.step()
        losses.append(step_loss.item())
        if len(losses) == 1 and buffers(model):
            write_safetensors(os.path.join(HERE, name + ".step1.safetensors"), buffers(model))
        model.eval()
        with torch.no_grad():
            test_losses.append(F.cross_entropy(model(tx), ty).item())
    out.append(("losses", torch.tensor(losses, dtype=torch.float32)))
    write_safetensors(os.path.join(HERE, name + ".ref.safetensors"), out)
    print("%s: loss %.6f -> %.6f after %d Adam steps (test loss %.6f -> %.6f)"
          % (name, losses[0], losses[-1], STEPS, test_losses[0], test_losses[-1]))


def main():
    torch.set_num_threads(1)
    for name, cls, seed, ntest in MODELS:
        generate(name, cls, seed, ntest)


if __name__ == "__main__":
    main()
