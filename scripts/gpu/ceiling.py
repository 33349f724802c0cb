#!/usr/bin/env python3
"""What range exactness can a slice classifier reach on ACDC?  Architecture arms in PyTorch on a lent GPU.

The shipped model (CBR-Compact 64², 2.5D, tfjs) is below the all-IN baseline in range exactness on ACDC
(docs/model.md). This script asks whether that is the model's limit or the data's: it runs several arms
under the product's own patient-level 5-fold split, on the product's own preprocessing
(scripts/export-acdc-tensors.ts), and scores every arm with the product's decoding (best OAP* IN+ OBS*
labelling by summed log-probability; plus the class log-prior fitted by nested CV, as `sax-range
fit-decoding` does).

Arms (a model and a target):
  cbr_compact_sgd   the shipped architecture and recipe (64², SGD Nesterov, 12 epochs, lr steps) - replication
  cbr_compact       the same network, AdamW + cosine, more epochs
  cbr_compact_aux   + a second head regressing log(1 + LV cavity px) and log(1 + myocardium px) of the view
  cbr_compact_w96   CBR-CompactW (32-256 filters) at 96²
  resnet18          a ResNet-18 from scratch (no ImageNet weights here), 96²
  resnet18_aux      + the area-regression head
  resnet18_5ch      5 neighbouring slices instead of 3
  stack_gru         CBR-CompactW slice encoder + a bidirectional GRU along the stack (whole stacks as samples)
  unet_seg          a U-Net (32-256 filters, 96²) segmenting LV cavity/myocardium/RV; a slice is IN when its
                    predicted cavity area passes a threshold (fitted by nested CV), the label rule of ACDC itself
  unet_s64, unet_t64  the same at 64² with a half / a quarter of the filters (sizes a 2-core CPU can train)
Results of the runs made so far: docs/model-runs/gpu-arms/.

Every arm trains on four folds and predicts the fifth; figures are pooled out-of-fold predictions at the last
epoch (no epoch picked on validation). Output: results.json and results.md in --out, written after every arm.

Usage: python3 scripts/gpu/ceiling.py --data .gpu/acdc-96 --out OUT [--arms a,b] [--budget-s 480]
       [--epochs-scale 1] [--folds 0,1,2,3,4] [--seeds 1,2] [--device cuda]
(--data BASE reads BASE.json and BASE.images.u8 / BASE.masks.u8, or their .gz.)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LABELS = ['OAP', 'IN', 'OBS']


# ----------------------------------------------------------------------------------------------------------
# Data

def read_u8(path):
    """A flat uint8 file, or its .gz (what travels to the lent machine)."""
    if os.path.exists(path):
        return np.fromfile(path, dtype=np.uint8)
    import gzip
    with gzip.open(path + '.gz', 'rb') as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


class Data:
    def __init__(self, base, device):
        meta = json.load(open(base + '.json'))
        self.meta = meta
        self.edge = meta['edge']
        self.size = meta['size']
        n = len(meta['slices'])
        e = self.edge
        img = read_u8(base + '.images.u8').reshape(n, e, e)
        msk = read_u8(base + '.masks.u8').reshape(n, e, e)
        self.images = torch.from_numpy(img).to(device)
        self.masks = torch.from_numpy(msk).to(device)
        sl = meta['slices']
        self.stack_of = np.array([s['stack'] for s in sl])
        self.pos = np.array([s['pos'] for s in sl])
        self.label = np.array([LABELS.index(s['label']) for s in sl])
        self.cavity = np.array([s['cavity'] for s in sl])
        st = meta['stacks']
        self.stacks = st
        self.fold = np.array([s['fold'] for s in st])
        self.phase = np.array([s['phase'] for s in st])
        # global index of each stack's first slice; slices of a stack are contiguous, apex -> base
        self.first = np.zeros(len(st), dtype=np.int64)
        for i in range(n - 1, -1, -1):
            self.first[self.stack_of[i]] = i
        self.count = np.array([s['n'] for s in st])
        self.device = device

    def neighbours(self, idx, k):
        """Global indices of slices pos-k..pos+k of each slice in idx (edge replicated)."""
        idx = np.asarray(idx)
        s = self.stack_of[idx]
        f = self.first[s]
        n = self.count[s]
        p = self.pos[idx]
        cols = [f + np.clip(p + d, 0, n - 1) for d in range(-k, k + 1)]
        return np.stack(cols, 1)

    def slices_of(self, stacks):
        return np.concatenate([np.arange(self.first[s], self.first[s] + self.count[s]) for s in stacks])


def views(data, idx, k, out_size, angles, with_mask=False):
    """Batch of network inputs: (B, 2k+1, S, S) floats, rotated by `angles` (degrees), central crop of the
    model's field of view (data.size of data.edge), resized to out_size. Masks (B, S, S) long if asked."""
    dev = data.device
    nb = torch.from_numpy(data.neighbours(idx, k)).to(dev)
    x = data.images[nb].float() / 255.0  # B, C, E, E
    B = x.shape[0]
    th = torch.as_tensor(np.deg2rad(angles), dtype=torch.float32, device=dev)
    scale = data.size / data.edge  # crop of the central size² after rotating
    cos, sin = torch.cos(th) * scale, torch.sin(th) * scale
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, (B, x.shape[1], data.size, data.size), align_corners=False)
    x = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
    if out_size != data.size:
        x = F.interpolate(x, size=(out_size, out_size), mode='bilinear', align_corners=False, antialias=True)
    x = (x - 0.5) / 0.25
    if not with_mask:
        return x, None
    m = data.masks[torch.from_numpy(np.asarray(idx)).to(dev)].float().unsqueeze(1)
    m = F.grid_sample(m, grid, mode='nearest', padding_mode='zeros', align_corners=False)
    if out_size != data.size:
        m = F.interpolate(m, size=(out_size, out_size), mode='nearest')
    return x, m[:, 0].long()


# ----------------------------------------------------------------------------------------------------------
# Models

def cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class Classifier(nn.Module):
    """A convolutional trunk, global average pooling, the paper's head (Dense 256, Dropout 0.5, Dense nout) and,
    with aux > 0, a linear regression head beside it."""

    def __init__(self, trunk, dim, nout=3, aux=0):
        super().__init__()
        self.trunk = trunk
        self.dim = dim
        self.head = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, nout))
        self.aux = nn.Linear(dim, aux) if aux else None

    def embed(self, x):
        return self.trunk(x).mean((2, 3))

    def forward(self, x):
        z = self.embed(x)
        return self.head(z), (self.aux(z) if self.aux is not None else None)


def CbrCompact(cin=3, widths=(16, 32, 64, 128), nout=3, aux=0):
    """src/training/models/cbr.ts cbr_compact: four 3x3 conv-BN-ReLU-maxpool blocks, then the head."""
    layers, c = [], cin
    for w in widths:
        layers.append(cbr(c, w))
        c = w
    return Classifier(nn.Sequential(*layers), c, nout, aux)


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


def ResNet18(cin=3, nout=3, aux=0):
    """torchvision's ResNet-18 layout (7x7/2 stem, max-pool, 2-2-2-2 basic blocks), then the paper's head."""
    stem = nn.Sequential(nn.Conv2d(cin, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    blocks, c = [], 64
    for w, st in ((64, 1), (128, 2), (256, 2), (512, 2)):
        blocks += [Basic(c, w, st), Basic(w, w, 1)]
        c = w
    return Classifier(nn.Sequential(stem, *blocks), c, nout, aux)


class StackGru(nn.Module):
    """Slice encoder + bidirectional GRU over the stack (apex -> base): per-slice logits that see the whole stack."""

    def __init__(self, cin=3):
        super().__init__()
        self.enc = CbrCompact(cin, (32, 64, 128, 256))
        self.gru = nn.GRU(self.enc.dim, 128, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, 3))

    def forward(self, x, lengths):
        z = self.enc.embed(x)  # sum(lengths), D
        seqs = torch.split(z, lengths)
        pad = nn.utils.rnn.pad_sequence(seqs, batch_first=True)
        packed = nn.utils.rnn.pack_padded_sequence(pad, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True)
        return self.out(torch.cat([h[i, :l] for i, l in enumerate(lengths)]))


class UNet(nn.Module):
    def __init__(self, cin=3, nout=4, w=(32, 64, 128, 256)):
        super().__init__()

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))

        self.down = nn.ModuleList()
        c = cin
        for x in w:
            self.down.append(block(c, x))
            c = x
        self.mid = block(c, c * 2)
        self.up = nn.ModuleList()
        self.upc = nn.ModuleList()
        c = c * 2
        for x in reversed(w):
            self.upc.append(nn.ConvTranspose2d(c, x, 2, 2))
            self.up.append(block(2 * x, x))
            c = x
        self.out = nn.Conv2d(c, nout, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for u, b, s in zip(self.upc, self.up, reversed(skips)):
            x = b(torch.cat([u(x), s], 1))
        return self.out(x)


# ----------------------------------------------------------------------------------------------------------
# Decoding and metrics (the product's: src/inference/decode.ts, src/training/decoding-prior.ts)

PRIOR_GRID = np.arange(-6, 2.0001, 0.25)


def stack_candidates(n):
    """All (a, e) with IN = [a, e), 0 <= a < e <= n, apex -> base: a OAP slices first, n - e OBS slices last."""
    a, e = np.triu_indices(n + 1, 1)
    return a, e


def decode_scores(logp):
    """Scores of every candidate labelling of one stack (n, 3 log-probs) and the candidates."""
    n = logp.shape[0]
    c = np.vstack([np.zeros((1, 3)), np.cumsum(logp, 0)])
    a, e = stack_candidates(n)
    base = c[a, 0] + (c[e, 1] - c[a, 1]) + (c[n, 2] - c[e, 2])
    return base, a, n - e


def truth_pair(labels):
    lab = np.asarray(labels)
    ins = np.nonzero(lab == 1)[0]
    return ins[0], ins[-1] + 1


def decode(logp, prior=(0.0, 0.0)):
    base, a, nb = decode_scores(logp)
    s = base + prior[0] * a + prior[1] * nb
    k = int(np.argmax(s))
    n = logp.shape[0]
    out = np.ones(n, dtype=np.int64)
    out[:a[k]] = 0
    out[n - nb[k]:] = 2
    return out


def fit_prior_grid(stack_logps, stack_labels):
    """For every (OAP, OBS) prior on the grid: which stacks it decodes exactly. Returns (G, S) bool."""
    po, pb = np.meshgrid(PRIOR_GRID, PRIOR_GRID, indexing='ij')
    po, pb = po.ravel(), pb.ravel()
    hits = np.zeros((po.size, len(stack_logps)), dtype=bool)
    for j, (lp, lab) in enumerate(zip(stack_logps, stack_labels)):
        base, a, nb = decode_scores(lp)
        s = base[None, :] + po[:, None] * a[None, :] + pb[:, None] * nb[None, :]
        k = np.argmax(s, 1)
        ta, te = truth_pair(lab)
        n = lp.shape[0]
        hits[:, j] = (a[k] == ta) & (n - nb[k] == te)
    return hits, np.stack([po, pb], 1)


def best_prior(hits, priors, mask):
    score = hits[:, mask].sum(1)
    best = score.max()
    cand = np.nonzero(score == best)[0]
    k = cand[np.argmin(np.abs(priors[cand]).sum(1))]  # ties: the smallest prior
    return priors[k]


def class_metrics(y, p):
    out = {}
    for k, name in enumerate(LABELS):
        tp = int(((p == k) & (y == k)).sum())
        fp = int(((p == k) & (y != k)).sum())
        fn = int(((p != k) & (y == k)).sum())
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        out[name] = {'P': pr, 'R': rc, 'F1': 2 * pr * rc / (pr + rc) if pr + rc else 0.0}
    return out


def evaluate(data, logp_by_stack, thresholds=None):
    """Pooled out-of-fold metrics per phase: argmax, plain decoding, decoding with a nested fitted prior."""
    stacks = sorted(logp_by_stack)
    labels = {s: data.label[data.first[s]:data.first[s] + data.count[s]] for s in stacks}
    hits, priors = fit_prior_grid([logp_by_stack[s] for s in stacks], [labels[s] for s in stacks])
    folds = np.array([data.fold[s] for s in stacks])
    nested = {}
    for f in np.unique(folds):
        pr = best_prior(hits, priors, folds != f)
        for j in np.nonzero(folds == f)[0]:
            nested[stacks[j]] = pr
    res = {}
    for ph in ('ED', 'ES'):
        ss = [s for s in stacks if data.phase[s] == ph]
        row = {'stacks': len(ss)}
        for mode in ('argmax', 'decoded', 'prior_nested'):
            ys, ps, exact = [], [], 0
            for s in ss:
                lp = logp_by_stack[s]
                if mode == 'argmax':
                    p = lp.argmax(1)
                else:
                    p = decode(lp, nested[s] if mode == 'prior_nested' else (0.0, 0.0))
                y = labels[s]
                ys.append(y)
                ps.append(p)
                exact += int((p == y).all())
            y, p = np.concatenate(ys), np.concatenate(ps)
            row[mode] = {'acc': float((y == p).mean()), 'rangeExact': exact / max(1, len(ss)), 'classes': class_metrics(y, p)}
        res[ph] = row
    res['priors'] = {int(f): nested[stacks[np.nonzero(folds == f)[0][0]]].tolist() for f in np.unique(folds)}
    return res


def all_in_baseline(data, stacks):
    out = {}
    for ph in ('ED', 'ES'):
        ss = [s for s in stacks if data.phase[s] == ph]
        exact = sum(int((data.label[data.first[s]:data.first[s] + data.count[s]] == 1).all()) for s in ss)
        out[ph] = exact / len(ss)
    return out


# ----------------------------------------------------------------------------------------------------------
# Training

def epoch_indices(data, train_slices, oversample, rng):
    lab = data.label[train_slices]
    rare = train_slices[lab != 1]
    idx = np.concatenate([train_slices] + [rare] * (oversample - 1))
    rng.shuffle(idx)
    return idx


def make_opt(model, recipe, steps):
    if recipe == 'sgd':  # the shipped protocol: SGD Nesterov 0.9, lr 0.01, x0.1 at 3/4, x0.01 at 11/12
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if i < steps * 8 / 12 else (0.1 if i < steps * 10 / 12 else 0.01))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(1.0, i / max(1, steps)))))
    return opt, sched


ARMS = {
    # name: (model kind, kwargs, input size, neighbours k, epochs, recipe, batch)
    'cbr_compact_sgd': ('slice', dict(arch='cbr'), 64, 1, 12, 'sgd', 32),
    'cbr_compact': ('slice', dict(arch='cbr'), 64, 1, 40, 'adamw', 64),
    'cbr_compact_w96': ('slice', dict(arch='cbr_w'), 96, 1, 40, 'adamw', 64),
    'resnet18': ('slice', dict(arch='resnet18'), 96, 1, 40, 'adamw', 64),
    'resnet18_aux': ('slice', dict(arch='resnet18', aux=2), 96, 1, 40, 'adamw', 64),
    'resnet18_5ch': ('slice', dict(arch='resnet18'), 96, 2, 40, 'adamw', 64),
    'cbr_compact_aux': ('slice', dict(arch='cbr', aux=2), 64, 1, 40, 'adamw', 64),
    'stack_gru': ('stack', dict(), 64, 1, 60, 'adamw', 8),
    'unet_seg': ('seg', dict(), 96, 1, 30, 'adamw', 32),
    # CPU-sized U-Nets (the product trains on a 2-core CPU): 64² input, a quarter / an eighth of the widths
    'unet_s64': ('seg', dict(w=(16, 32, 64, 128)), 64, 1, 30, 'adamw', 32),
    'unet_t64': ('seg', dict(w=(8, 16, 32, 64)), 64, 1, 30, 'adamw', 32),
}


def build(kind, kw, cin):
    if kind == 'stack':
        return StackGru(cin)
    if kind == 'seg':
        return UNet(cin, w=kw.get('w', (32, 64, 128, 256)))
    aux = kw.get('aux', 0)
    if kw['arch'] == 'cbr':
        return CbrCompact(cin, aux=aux)
    if kw['arch'] == 'cbr_w':
        return CbrCompact(cin, (32, 64, 128, 256), aux=aux)
    return ResNet18(cin, aux=aux)


def aux_targets(mask):
    cav = (mask == 3).float().sum((1, 2))
    myo = (mask == 2).float().sum((1, 2))
    return torch.stack([torch.log1p(cav), torch.log1p(myo)], 1) / 8.0


def run_fold(data, arm, fold, seed, epochs_scale, log):
    kind, kw, size, k, epochs, recipe, bs = ARMS[arm]
    epochs = max(1, int(round(epochs * epochs_scale)))
    dev = data.device
    torch.manual_seed(seed * 100 + fold)
    rng = np.random.default_rng(seed * 100 + fold)
    stacks_all = np.arange(len(data.stacks))
    tr_st = stacks_all[data.fold != fold]
    va_st = stacks_all[data.fold == fold]
    tr = data.slices_of(tr_st)
    model = build(kind, kw, 2 * k + 1).to(dev)
    per_epoch = (len(tr) + (2 * (data.label[tr] != 1).sum())) // bs if kind != 'stack' else len(tr_st) // bs
    opt, sched = make_opt(model, recipe, per_epoch * epochs)
    want_mask = kind == 'seg' or kw.get('aux', 0) > 0
    seg_w = torch.tensor([1.0, 1.0, 1.0, 3.0], device=dev)
    for ep in range(epochs):
        model.train()
        if kind == 'stack':
            order = rng.permutation(tr_st)
            for b in range(0, len(order) - bs + 1, bs):
                sts = order[b:b + bs]
                lengths = [int(data.count[s]) for s in sts]
                idx = data.slices_of(sts)
                ang = np.repeat(rng.uniform(-45, 45, len(sts)), lengths)
                x, _ = views(data, idx, k, size, ang)
                y = torch.from_numpy(data.label[idx]).to(dev)
                logits = model(x, lengths)
                w = torch.tensor([3.0, 1.0, 3.0], device=dev)
                loss = F.cross_entropy(logits, y, weight=w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            continue
        idx_all = epoch_indices(data, tr, 3, rng)
        for b in range(0, len(idx_all) - bs + 1, bs):
            idx = idx_all[b:b + bs]
            x, m = views(data, idx, k, size, rng.uniform(-45, 45, len(idx)), with_mask=want_mask)
            if kind == 'seg':
                loss = F.cross_entropy(model(x), m, weight=seg_w)
            else:
                y = torch.from_numpy(data.label[idx]).to(dev)
                logits, aux = model(x)
                loss = F.cross_entropy(logits, y)
                if aux is not None:
                    loss = loss + F.smooth_l1_loss(aux, aux_targets(m))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    # predict the validation stacks
    model.eval()
    out = {}
    with torch.no_grad():
        for s in va_st:
            idx = data.slices_of([s])
            x, _ = views(data, idx, k, size, np.zeros(len(idx)))
            if kind == 'stack':
                lp = F.log_softmax(model(x, [len(idx)]), 1)
            elif kind == 'seg':
                prob = F.softmax(model(x), 1)
                area = prob[:, 3].sum((1, 2))  # expected LV-cavity pixels on the size² grid
                out[int(s)] = area.cpu().numpy()
                continue
            else:
                lp = F.log_softmax(model(x)[0], 1)
            out[int(s)] = lp.cpu().numpy().astype(np.float64)
    return out


def seg_to_logp(areas, t, width=0.5):
    """Cavity areas -> per-slice log-probabilities for decoding: p(cavity) = sigmoid((ln(1+a) - ln(1+t)) / w);
    a cavity slice is IN; a slice without one is OAP or OBS (both get the rest, the decoder picks the side)."""
    z = (np.log1p(areas) - np.log1p(t)) / width
    p_in = 1 / (1 + np.exp(-z))
    p_in = np.clip(p_in, 1e-6, 1 - 1e-6)
    return np.stack([np.log(1 - p_in), np.log(p_in), np.log(1 - p_in)], 1)


def evaluate_seg(data, areas_by_stack):
    """Nested CV over the area threshold (the other folds choose t), then the product's decoding."""
    stacks = sorted(areas_by_stack)
    folds = np.array([data.fold[s] for s in stacks])
    ts = [0.5, 1, 2, 4, 8, 16, 32, 64]
    exact = {}
    for t in ts:
        ex = []
        for s in stacks:
            lab = data.label[data.first[s]:data.first[s] + data.count[s]]
            ex.append(bool((decode(seg_to_logp(areas_by_stack[s], t)) == lab).all()))
        exact[t] = np.array(ex)
    logp = {}
    chosen = {}
    for f in np.unique(folds):
        m = folds != f
        t = max(ts, key=lambda t: (exact[t][m].sum(), -abs(math.log(t / 4))))
        chosen[int(f)] = t
        for j in np.nonzero(folds == f)[0]:
            logp[stacks[j]] = seg_to_logp(areas_by_stack[stacks[j]], t)
    res = evaluate(data, logp)
    res['thresholds'] = chosen
    return res


def fmt_row(name, res, secs):
    cells = [name]
    for ph in ('ED', 'ES'):
        r = res[ph]
        cells.append('%.1f / %.0f / %.0f' % (100 * r['decoded']['acc'], 100 * r['decoded']['rangeExact'], 100 * r['prior_nested']['rangeExact']))
        c = r['decoded']['classes']
        cells.append('%.2f / %.2f / %.2f' % (c['OAP']['F1'], c['IN']['F1'], c['OBS']['F1']))
    cells.append('%.0f' % secs)
    return '| ' + ' | '.join(cells) + ' |'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--arms', default=','.join(ARMS))
    ap.add_argument('--budget-s', type=float, default=480)
    ap.add_argument('--epochs-scale', type=float, default=1.0)
    ap.add_argument('--folds', default='0,1,2,3,4')
    ap.add_argument('--seeds', default='1')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = ap.parse_args()
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    if a.device == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = Data(a.data, a.device)
    folds = [int(f) for f in a.folds.split(',')]
    env = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(0) if a.device == 'cuda' else 'cpu',
           'slices': len(data.label), 'stacks': len(data.stacks)}
    print(json.dumps(env), flush=True)
    stacks_eval = [s for s in range(len(data.stacks)) if data.fold[s] in folds]
    results = {'env': env, 'allIn': all_in_baseline(data, stacks_eval), 'arms': {}}
    lines = ['| arm | ED acc / exact / exact+prior % | ED F1 OAP/IN/OBS | ES acc / exact / exact+prior % | ES F1 OAP/IN/OBS | s |',
             '|---|---|---|---|---|---|']
    for seed in [int(s) for s in a.seeds.split(',')]:
        for arm in a.arms.split(','):
            name = arm if seed == 1 else '%s@seed%d' % (arm, seed)
            left = a.budget_s - (time.time() - t0)
            if left < 20:
                print('budget spent: skipping %s' % name, flush=True)
                continue
            ta = time.time()
            preds = {}
            for f in folds:
                preds.update(run_fold(data, arm, f, seed, a.epochs_scale, print))
                print('%s fold %d done at %.0f s (total %.0f s)' % (name, f, time.time() - ta, time.time() - t0), flush=True)
            res = evaluate_seg(data, preds) if ARMS[arm][0] == 'seg' else evaluate(data, preds)
            secs = time.time() - ta
            res['seconds'] = secs
            results['arms'][name] = res
            lines.append(fmt_row(name, res, secs))
            print(lines[-1], flush=True)
            json.dump(results, open(os.path.join(a.out, 'results.json'), 'w'), indent=1)
            open(os.path.join(a.out, 'results.md'), 'w').write(
                'all IN (no model): ED %.0f %%, ES %.0f %% range exact\n\n' % (100 * results['allIn']['ED'], 100 * results['allIn']['ES'])
                + '\n'.join(lines) + '\n')
    print('done in %.0f s' % (time.time() - t0), flush=True)


if __name__ == '__main__':
    main()
