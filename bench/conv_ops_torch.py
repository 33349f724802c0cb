#!/usr/bin/env python3
"""PyTorch counterpart of bench/conv-ops.ts and a reference for bench/train-epoch.ts on a GPU host (not a test).

  python3 bench/conv_ops_torch.py [--device cuda] [--input 224] [--batch 32] [--reps 5] [--paper]

1. For the conv layers of CBR-Small at --input (7x7 'valid', 32-64-128-256, max-pool 2): ms per call of the
   forward convolution and of both gradients (torch.nn.grad.conv2d_input / conv2d_weight), fp32, cuDNN
   defaults (TF32 off, as tfjs computes in fp32).
2. With --paper: training samples/s of the paper's reference cells built with torchvision (random weights,
   no download): VGG16 depth 0 (features frozen, GAP -> Dense 256 -> Dropout 0.5 -> Dense 3 trained) and
   DenseNet121 depth 1 (only denseblock4 + norm5 and the head trained), SGD Nesterov 0.9, random batches on
   the device (no data pipeline: compare with bench/train-epoch.ts knowing that it includes one).
Prints JSON lines.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(fn, reps, dev):
    for _ in range(2):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / reps


def conv_ops(a, dev):
    size, cin = a.input, 3
    for cout in (32, 64, 128, 256):
        out = size - 7 + 1
        x = torch.randn(a.batch, cin, size, size, device=dev)
        w = torch.randn(cout, cin, 7, 7, device=dev)
        dy = torch.randn(a.batch, cout, out, out, device=dev)
        fwd = timed(lambda: F.conv2d(x, w), a.reps, dev)
        din = timed(lambda: torch.nn.grad.conv2d_input(x.shape, w, dy), a.reps, dev)
        dw = timed(lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy), a.reps, dev)
        print(json.dumps({"framework": "pytorch", "device": str(dev), "layer": f"{size}x{cin} -> {out}x{cout}, 7x7",
                          "Conv2D_ms": round(fwd, 2), "BackpropInput_ms": round(din, 2), "BackpropFilter_ms": round(dw, 2)}))
        size, cin = out // 2, cout


class Head(nn.Module):
    def __init__(self, features, channels):
        super().__init__()
        self.features = features
        self.fc1 = nn.Linear(channels, 256)
        self.fc2 = nn.Linear(256, 3)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, self.training))


def paper(a, dev):
    import torchvision

    cells = []
    vgg = Head(torchvision.models.vgg16(weights=None).features, 512)
    for p in vgg.features.parameters():
        p.requires_grad = False
    cells.append(("D0/vgg16", vgg))
    dn = torchvision.models.densenet121(weights=None)
    m = Head(dn.features, 1024)
    for name, p in m.features.named_parameters():
        p.requires_grad = name.startswith("denseblock4") or name.startswith("norm5")
    cells.append(("D1/densenet121", m))
    for name, model in cells:
        model = model.to(dev).train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, nesterov=True)
        x = torch.randn(a.batch, 3, 224, 224, device=dev)
        y = torch.randint(0, 3, (a.batch,), device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()

        ms = timed(step, a.reps * 4, dev)
        print(json.dumps({"framework": "pytorch", "torch": torch.__version__, "device": str(dev), "cell": name,
                          "batch": a.batch, "input": 224, "step_ms": round(ms, 2), "samples_per_s": round(a.batch * 1000 / ms, 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--input", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--paper", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    conv_ops(a, dev)
    if a.paper:
        paper(a, dev)


if __name__ == "__main__":
    main()
