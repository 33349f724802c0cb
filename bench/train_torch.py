#!/usr/bin/env python3
"""PyTorch CPU counterpart of bench/train.ts: training samples/s of the same CBR model, batch and input.

Usage: python3 bench/train_torch.py [--arch cbr_small] [--input 128] [--batch 16] [--steps 20]
                                     [--warmup 3] [--threads N] [--seed 1] [--device cpu|cuda]

The model mirrors src/training/models/cbr.ts layer for layer (PyTorch's NCHW layout instead of NHWC):
  per block i:  Conv2d(c_in, f_i, k, stride 1, padding 0 ('valid') or k//2 ('same'), bias=True)
                -> BatchNorm2d(f_i, eps=1e-3, momentum=0.01)   (Keras momentum 0.99 == PyTorch 0.01)
                -> ReLU -> MaxPool2d(pool, stride pool)
  head:         global average pool -> Linear(f_last, 256) -> ReLU -> Dropout(0.5) -> Linear(256, 3)
  loss:         softmax + categorical cross-entropy, as F.cross_entropy on the logits (the same function;
                tfjs applies softmax in the last layer and Keras' clipped log, a negligible cost difference)
Initialisation as Keras: Glorot-uniform kernels, zero biases, BN gamma 1 / beta 0 (speed does not depend on it).
Optimizer: torch.optim.SGD(lr 0.01, momentum 0.9, nesterov=True). Random inputs N(0, 1) and random labels,
one fixed batch (as the tfjs side). Also reports the CPU that other processes used during the timed
steps (/proc/stat busy time minus this process's own), in % of one core. torch.set_num_threads(threads), threads = os.cpu_count() by default
(--threads overrides). Warm-up steps, then `steps` timed steps (loss.item() each step, as trainStep reads
the loss back). --device cuda runs model and batch on the GPU (loss.item() synchronises each step, so the
step times are complete). Prints one JSON object on stdout.
"""

import argparse
import json
import os
import platform
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Same table as CBR_SPECS in src/training/models/cbr.ts.
CBR_SPECS = {
    "cbr_large_t": {"filters": [32, 64, 128, 256, 512], "kernel": 7, "padding": "valid", "pool": 2},
    "cbr_large_w": {"filters": [64, 128, 256, 512], "kernel": 7, "padding": "valid", "pool": 2},
    "cbr_small": {"filters": [32, 64, 128, 256], "kernel": 7, "padding": "valid", "pool": 2},
    "cbr_tiny": {"filters": [64, 128, 256, 512], "kernel": 5, "padding": "valid", "pool": 2},
    "cbr_compact": {"filters": [16, 32, 64, 128], "kernel": 3, "padding": "same", "pool": 2},
    "cbr_compact_w": {"filters": [32, 64, 128, 256], "kernel": 3, "padding": "same", "pool": 2},
}
HEAD_UNITS = 256
HEAD_DROPOUT = 0.5
NUM_CLASSES = 3


def canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key.startswith("cbt_"):
        key = "cbr_" + key[4:]
    key = {"cbr_larget": "cbr_large_t", "cbr_largew": "cbr_large_w", "cbr_compactw": "cbr_compact_w"}.get(key, key)
    if key not in CBR_SPECS:
        raise SystemExit(f"unknown architecture '{name}' (known: {', '.join(CBR_SPECS)})")
    return key


class Cbr(nn.Module):
    def __init__(self, spec: dict, in_channels: int = 3):
        super().__init__()
        k = spec["kernel"]
        pad = 0 if spec["padding"] == "valid" else k // 2  # odd k: k//2 == Keras 'same' at stride 1
        blocks = []
        c = in_channels
        for f in spec["filters"]:
            blocks += [
                nn.Conv2d(c, f, k, stride=1, padding=pad, bias=True),
                nn.BatchNorm2d(f, eps=1e-3, momentum=0.01),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(spec["pool"], stride=spec["pool"]),
            ]
            c = f
        self.features = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(c, HEAD_UNITS)
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.predictions = nn.Linear(HEAD_UNITS, NUM_CLASSES)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.mean(dim=(2, 3))  # GlobalAveragePooling2D
        x = F.relu(self.fc1(x))
        x = self.dropout(x)
        return self.predictions(x)  # logits; softmax is inside the loss


def feature_sizes(spec: dict, size: int) -> list:
    out = []
    for _ in spec["filters"]:
        conv = size - spec["kernel"] + 1 if spec["padding"] == "valid" else size
        size = (conv - spec["pool"]) // spec["pool"] + 1
        if conv < spec["pool"] or size < 1:
            raise SystemExit(f"input too small for {spec}")
        out.append(size)
    return out


def cpu_busy_seconds() -> float:
    """Machine-wide busy CPU time (all cores, seconds) from /proc/stat; -1 when unavailable."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return -1.0


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="cbr_small")
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = os.cpu_count())")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()

    key = canonical(a.arch)
    spec = CBR_SPECS[key]
    sizes = feature_sizes(spec, a.input)
    threads = a.threads if a.threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    load_start = os.getloadavg()

    device = torch.device(a.device)
    model = Cbr(spec).to(device)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Non-trainable state that tfjs also counts as weights: BN moving mean/variance (not num_batches_tracked).
    bn_stats = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(a.batch, 3, a.input, a.input).to(device)
    y = torch.randint(0, NUM_CLASSES, (a.batch,)).to(device)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    busy0, own0 = cpu_busy_seconds(), own_cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    busy1, own1 = cpu_busy_seconds(), own_cpu_seconds()
    # CPU used by other processes during the timed steps, in % of one core (approximate: tick granularity).
    other_pct = 100 * max(0.0, (busy1 - busy0) - (own1 - own0)) / total if busy0 >= 0 else None
    times.sort()
    print(
        json.dumps(
            {
                "framework": "pytorch",
                "torch": torch.__version__,
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
                "device": a.device + (f" ({torch.cuda.get_device_name(0)})" if a.device == "cuda" else ""),
                "cpuCount": os.cpu_count(),
                "arch": key,
                "input": a.input,
                "batch": a.batch,
                "warmup": a.warmup,
                "steps": a.steps,
                "featureSizes": sizes,
                "trainableParams": trainable,
                "totalParams": trainable + bn_stats,
                "seconds": total,
                "samplesPerSec": a.batch * a.steps / total,
                "medianStepMs": 1000 * times[len(times) // 2],
                "minStepMs": 1000 * times[0],
                "loadAvgStart": list(load_start),
                "ownCpuPct": 100 * (own1 - own0) / total,
                "otherCpuPct": other_pct,
                "model": repr(model),
            }
        )
    )


if __name__ == "__main__":
    main()
