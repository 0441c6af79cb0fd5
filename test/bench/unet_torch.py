#!/usr/bin/python3
"""PyTorch twin of fedsynth's U-Net (common/src/ml/segmentation/unet.ts) for `npm run bench:train`.

Same architecture (nnU-Net PlainConvUNet style: two 3x3 conv -> InstanceNorm(affine) -> LeakyReLU(0.01) per stage,
stride-2 conv opening each lower stage, 2x2 stride-2 transposed conv up, skip concat, 1x1 heads with deep
supervision at levels 0..depth-3, no conv bias before a norm), same loss (batch soft Dice over foreground classes,
smooth 1e-5, + cross-entropy; deep-supervision weights 1, 1/2, ... normalised) and optimizer (SGD, Nesterov
momentum 0.99). Usage:
  /usr/bin/python3 test/bench/unet_torch.py --size 64 --batch 8 --infer-batch 32 --threads 2 --steps 10
Prints JSON: parameter count, median ms per training step and per inference batch.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--size", type=int, default=64)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--infer-batch", type=int, default=32)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--depth", type=int, default=4)
p.add_argument("--base", type=int, default=16)
p.add_argument("--max-filters", type=int, default=128)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(1)


def block(cin, cout, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.InstanceNorm2d(cout, eps=1e-5, affine=True),
        nn.LeakyReLU(0.01),
    )


class UNet(nn.Module):
    def __init__(self, depth, base, max_filters, cin=4, classes=4):
        super().__init__()
        f = [min(base * 2**i, max_filters) for i in range(depth)]
        self.depth = depth
        self.enc = nn.ModuleList(
            nn.Sequential(block(cin if i == 0 else f[i - 1], f[i], 1 if i == 0 else 2), block(f[i], f[i]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2, bias=False) for i in range(depth - 1))
        self.dec = nn.ModuleList(nn.Sequential(block(2 * f[i], f[i]), block(f[i], f[i])) for i in range(depth - 1))
        self.levels = list(range(max(depth - 3, 0) + 1))
        self.heads = nn.ModuleDict({str(i): nn.Conv2d(f[i], classes, 1) for i in self.levels})

    def forward(self, x, training=True):
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        outs = []
        for level in range(self.depth - 2, -1, -1):
            x = self.dec[level](torch.cat([self.up[level](x), skips[level]], 1))
            if str(level) in self.heads and (training or level == 0):
                outs.insert(0, self.heads[str(level)](x))
        return outs


def dice_ce(logits, labels):
    onehot = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    logp = F.log_softmax(logits, 1)
    ce = -(onehot * logp).sum(1).mean()
    prob = logp.exp()[:, 1:]
    t = onehot[:, 1:]
    inter = (prob * t).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + t.sum((0, 2, 3))
    dice = 1 - ((2 * inter + 1e-5) / (denom + 1e-5)).mean()
    return ce + dice


def loss_fn(outs, labels):
    w = [1 / 2**i for i in range(len(outs))]
    w = [x / sum(w) for x in w]
    total = 0
    for k, o in enumerate(outs):
        f = labels.shape[-1] // o.shape[-1]
        lab = labels[:, f // 2 :: f, f // 2 :: f] if f > 1 else labels
        total = total + w[k] * dice_ce(o, lab)
    return total


model = UNet(args.depth, args.base, args.max_filters)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
x = torch.rand(args.batch, 4, args.size, args.size) * 2 - 1
y = torch.randint(0, 4, (args.batch, args.size, args.size))

times = []
for step in range(args.steps + 2):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x, True), y)
    loss.backward()
    opt.step()
    if step >= 2:
        times.append((time.perf_counter() - t0) * 1000)

model.eval()
xi = torch.rand(args.infer_batch, 4, args.size, args.size) * 2 - 1
infer = []
with torch.no_grad():
    for step in range(max(3, args.steps // 2) + 1):
        t0 = time.perf_counter()
        model(xi, False)[0].argmax(1)
        if step >= 1:
            infer.append((time.perf_counter() - t0) * 1000)

print(
    json.dumps(
        {
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_ms": statistics.median(times),
            "infer_ms": statistics.median(infer),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
    )
)
