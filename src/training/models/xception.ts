/**
 * Xception without its top (Keras Applications `xception.py`): entry flow (blocks 1–4), middle flow (blocks
 * 5–12, three separable convs each with an identity residual), exit flow (block 13 with a conv residual,
 * block 14: `block14_sepconv1`, `block14_sepconv2` + BN + ReLU). The four residual 1×1 convs, their BNs and
 * the twelve adds are unnamed in Keras: they get Keras 2's auto-names `conv2d_1`…`conv2d_4`,
 * `batch_normalization_1`…`_4`, `add_1`…`add_12`, as in the ImageNet weight file. 20,861,480 parameters.
 */

import { type KerasGraph, type Sym } from './keras-graph.js';

/** Builds Xception on `input`; returns `block14_sepconv2_act`. */
export function xceptionBase(input: Sym, g: KerasGraph): Sym {
  const sep = (x: Sym, filters: number, name: string) => g.bn(g.separable(x, { filters, kernel: 3, padding: 'same', useBias: false, name }), { name: `${name}_bn` });
  const residualConv = (x: Sym, filters: number) => g.bn(g.conv(x, { filters, kernel: 1, strides: 2, padding: 'same', useBias: false }));

  let x = g.conv(input, { filters: 32, kernel: 3, strides: 2, useBias: false, name: 'block1_conv1' });
  x = g.bn(x, { name: 'block1_conv1_bn' });
  x = g.relu(x, 'block1_conv1_act');
  x = g.conv(x, { filters: 64, kernel: 3, useBias: false, name: 'block1_conv2' });
  x = g.bn(x, { name: 'block1_conv2_bn' });
  x = g.relu(x, 'block1_conv2_act');

  // Blocks 2–4: two separable convs, max-pool, strided 1×1 conv residual. Block 2 has no leading ReLU.
  for (const [b, filters] of [
    [2, 128],
    [3, 256],
    [4, 728],
  ] as const) {
    const residual = residualConv(x, filters);
    if (b !== 2) x = g.relu(x, `block${b}_sepconv1_act`);
    x = sep(x, filters, `block${b}_sepconv1`);
    x = g.relu(x, `block${b}_sepconv2_act`);
    x = sep(x, filters, `block${b}_sepconv2`);
    x = g.maxPool(x, 3, 2, 'same', `block${b}_pool`);
    x = g.add([x, residual]);
  }

  for (let b = 5; b <= 12; b++) {
    const residual = x;
    for (let i = 1; i <= 3; i++) {
      x = g.relu(x, `block${b}_sepconv${i}_act`);
      x = sep(x, 728, `block${b}_sepconv${i}`);
    }
    x = g.add([x, residual]);
  }

  const residual = residualConv(x, 1024);
  x = g.relu(x, 'block13_sepconv1_act');
  x = sep(x, 728, 'block13_sepconv1');
  x = g.relu(x, 'block13_sepconv2_act');
  x = sep(x, 1024, 'block13_sepconv2');
  x = g.maxPool(x, 3, 2, 'same', 'block13_pool');
  x = g.add([x, residual]);

  x = sep(x, 1536, 'block14_sepconv1');
  x = g.relu(x, 'block14_sepconv1_act');
  x = sep(x, 2048, 'block14_sepconv2');
  return g.relu(x, 'block14_sepconv2_act');
}
