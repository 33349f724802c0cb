/**
 * InceptionV3 and InceptionResNetV2 without their tops (Keras Applications `inception_v3.py`,
 * `inception_resnet_v2.py`). Both build every branch conv with an unnamed `conv2d_bn` (Conv2D without bias →
 * BatchNormalization with `scale=False` → ReLU), so those layers get Keras 2's auto-names in creation order:
 * `conv2d_1`…`conv2d_94` / `batch_normalization_1`… for InceptionV3 (module outputs `mixed0`…`mixed10`),
 * `conv2d_1`…`conv2d_203` for InceptionResNetV2, whose named layers are `mixed_5b`, `mixed_6a`, `mixed_7a`,
 * `block35_{1..10}`, `block17_{1..20}`, `block8_{1..10}` (each with `_mixed`, `_conv`, `_ac`) and `conv_7b`.
 * The residual scaling (Keras 2 `Lambda`, Keras 3 `CustomScaleLayer`) is `CustomScaleLayer` named
 * `block8_10` etc. Parameters: InceptionV3 21,802,784; InceptionResNetV2 54,336,736.
 */

import { CustomScaleLayer } from './keras-layers.js';
import { channels, type KerasGraph, type Sym } from './keras-graph.js';

type Kernel = number | [number, number];

/** InceptionV3's conv2d_bn: conv (no bias) → BN (no γ) → ReLU, names `<name>_conv`, `<name>_bn`, `<name>` when named. */
function conv2dBnV3(g: KerasGraph, x: Sym, filters: number, kernel: Kernel, padding: 'same' | 'valid' = 'same', strides = 1): Sym {
  x = g.conv(x, { filters, kernel, strides, padding, useBias: false });
  x = g.bn(x, { scale: false });
  return g.relu(x);
}

/** Builds InceptionV3 on `input`; returns `mixed10`. */
export function inceptionV3Base(input: Sym, g: KerasGraph): Sym {
  const cb = (x: Sym, f: number, k: Kernel, padding: 'same' | 'valid' = 'same', strides = 1) => conv2dBnV3(g, x, f, k, padding, strides);
  let x = cb(input, 32, 3, 'valid', 2);
  x = cb(x, 32, 3, 'valid');
  x = cb(x, 64, 3);
  x = g.maxPool(x, 3, 2);
  x = cb(x, 80, 1, 'valid');
  x = cb(x, 192, 3, 'valid');
  x = g.maxPool(x, 3, 2);

  // mixed 0, 1, 2: 35 × 35
  for (const [i, poolFilters] of [
    [0, 32],
    [1, 64],
    [2, 64],
  ] as const) {
    const b1 = cb(x, 64, 1);
    let b5 = cb(x, 48, 1);
    b5 = cb(b5, 64, 5);
    let b3 = cb(x, 64, 1);
    b3 = cb(b3, 96, 3);
    b3 = cb(b3, 96, 3);
    let bp = g.avgPool(x, 3, 1, 'same');
    bp = cb(bp, poolFilters, 1);
    x = g.concat([b1, b5, b3, bp], `mixed${i}`);
  }

  // mixed 3: 17 × 17
  {
    const b3 = cb(x, 384, 3, 'valid', 2);
    let bd = cb(x, 64, 1);
    bd = cb(bd, 96, 3);
    bd = cb(bd, 96, 3, 'valid', 2);
    const bp = g.maxPool(x, 3, 2);
    x = g.concat([b3, bd, bp], 'mixed3');
  }

  // mixed 4–7: 17 × 17, 7×7 factorised
  for (const [i, c] of [
    [4, 128],
    [5, 160],
    [6, 160],
    [7, 192],
  ] as const) {
    const b1 = cb(x, 192, 1);
    let b7 = cb(x, c, 1);
    b7 = cb(b7, c, [1, 7]);
    b7 = cb(b7, 192, [7, 1]);
    let bd = cb(x, c, 1);
    bd = cb(bd, c, [7, 1]);
    bd = cb(bd, c, [1, 7]);
    bd = cb(bd, c, [7, 1]);
    bd = cb(bd, 192, [1, 7]);
    let bp = g.avgPool(x, 3, 1, 'same');
    bp = cb(bp, 192, 1);
    x = g.concat([b1, b7, bd, bp], `mixed${i}`);
  }

  // mixed 8: 8 × 8
  {
    let b3 = cb(x, 192, 1);
    b3 = cb(b3, 320, 3, 'valid', 2);
    let b7 = cb(x, 192, 1);
    b7 = cb(b7, 192, [1, 7]);
    b7 = cb(b7, 192, [7, 1]);
    b7 = cb(b7, 192, 3, 'valid', 2);
    const bp = g.maxPool(x, 3, 2);
    x = g.concat([b3, b7, bp], 'mixed8');
  }

  // mixed 9, 10: 8 × 8 × 2048
  for (let i = 0; i < 2; i++) {
    const b1 = cb(x, 320, 1);
    const b3 = cb(x, 384, 1);
    const b3a = cb(b3, 384, [1, 3]);
    const b3b = cb(b3, 384, [3, 1]);
    const b3c = g.concat([b3a, b3b], `mixed9_${i}`);
    let bd = cb(x, 448, 1);
    bd = cb(bd, 384, 3);
    const bda = cb(bd, 384, [1, 3]);
    const bdb = cb(bd, 384, [3, 1]);
    const bdc = g.concat([bda, bdb]);
    let bp = g.avgPool(x, 3, 1, 'same');
    bp = cb(bp, 192, 1);
    x = g.concat([b1, b3c, bdc, bp], `mixed${9 + i}`);
  }
  return x;
}

/** InceptionResNetV2's conv2d_bn: conv → (BN without γ unless use_bias) → activation; `<name>_bn`, `<name>_ac` when named. */
function conv2dBnIrv2(
  g: KerasGraph,
  x: Sym,
  filters: number,
  kernel: Kernel,
  o: { strides?: number; padding?: 'same' | 'valid'; activation?: 'relu' | null; useBias?: boolean; name?: string } = {},
): Sym {
  const useBias = o.useBias ?? false;
  x = g.conv(x, { filters, kernel, strides: o.strides ?? 1, padding: o.padding ?? 'same', useBias, name: o.name });
  if (!useBias) x = g.bn(x, { scale: false, name: o.name ? `${o.name}_bn` : undefined });
  if (o.activation !== null) x = g.relu(x, o.name ? `${o.name}_ac` : undefined);
  return x;
}

function inceptionResnetBlock(g: KerasGraph, x: Sym, scale: number, type: 'block35' | 'block17' | 'block8', idx: number, activation = true): Sym {
  const cb = (t: Sym, f: number, k: Kernel) => conv2dBnIrv2(g, t, f, k);
  let branches: Sym[];
  if (type === 'block35') {
    const b0 = cb(x, 32, 1);
    const b1 = cb(cb(x, 32, 1), 32, 3);
    const b2 = cb(cb(cb(x, 32, 1), 48, 3), 64, 3);
    branches = [b0, b1, b2];
  } else if (type === 'block17') {
    const b0 = cb(x, 192, 1);
    const b1 = cb(cb(cb(x, 128, 1), 160, [1, 7]), 192, [7, 1]);
    branches = [b0, b1];
  } else {
    const b0 = cb(x, 192, 1);
    const b1 = cb(cb(cb(x, 192, 1), 224, [1, 3]), 256, [3, 1]);
    branches = [b0, b1];
  }
  const name = `${type}_${idx}`;
  const mixed = g.concat(branches, `${name}_mixed`);
  const up = conv2dBnIrv2(g, mixed, channels(x), 1, { activation: null, useBias: true, name: `${name}_conv` });
  let y = new CustomScaleLayer({ name, scale }).apply([x, up]) as Sym;
  if (activation) y = g.relu(y, `${name}_ac`);
  return y;
}

/** Builds InceptionResNetV2 on `input`; returns `conv_7b_ac`. */
export function inceptionResnetV2Base(input: Sym, g: KerasGraph): Sym {
  const cb = (t: Sym, f: number, k: Kernel, strides = 1, padding: 'same' | 'valid' = 'same') => conv2dBnIrv2(g, t, f, k, { strides, padding });
  let x = cb(input, 32, 3, 2, 'valid');
  x = cb(x, 32, 3, 1, 'valid');
  x = cb(x, 64, 3);
  x = g.maxPool(x, 3, 2);
  x = cb(x, 80, 1, 1, 'valid');
  x = cb(x, 192, 3, 1, 'valid');
  x = g.maxPool(x, 3, 2);

  // Mixed 5b (Inception-A): 35 × 35 × 320
  {
    const b0 = cb(x, 96, 1);
    const b1 = cb(cb(x, 48, 1), 64, 5);
    const b2 = cb(cb(cb(x, 64, 1), 96, 3), 96, 3);
    const bp = cb(g.avgPool(x, 3, 1, 'same'), 64, 1);
    x = g.concat([b0, b1, b2, bp], 'mixed_5b');
  }
  for (let i = 1; i <= 10; i++) x = inceptionResnetBlock(g, x, 0.17, 'block35', i);

  // Mixed 6a (Reduction-A): 17 × 17 × 1088
  {
    const b0 = cb(x, 384, 3, 2, 'valid');
    const b1 = cb(cb(cb(x, 256, 1), 256, 3), 384, 3, 2, 'valid');
    const bp = g.maxPool(x, 3, 2);
    x = g.concat([b0, b1, bp], 'mixed_6a');
  }
  for (let i = 1; i <= 20; i++) x = inceptionResnetBlock(g, x, 0.1, 'block17', i);

  // Mixed 7a (Reduction-B): 8 × 8 × 2080
  {
    const b0 = cb(cb(x, 256, 1), 384, 3, 2, 'valid');
    const b1 = cb(cb(x, 256, 1), 288, 3, 2, 'valid');
    const b2 = cb(cb(cb(x, 256, 1), 288, 3), 320, 3, 2, 'valid');
    const bp = g.maxPool(x, 3, 2);
    x = g.concat([b0, b1, b2, bp], 'mixed_7a');
  }
  for (let i = 1; i <= 9; i++) x = inceptionResnetBlock(g, x, 0.2, 'block8', i);
  x = inceptionResnetBlock(g, x, 1.0, 'block8', 10, false);

  return conv2dBnIrv2(g, x, 1536, 1, { name: 'conv_7b' });
}
