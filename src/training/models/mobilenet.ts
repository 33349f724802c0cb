/**
 * MobileNet V1 and V2 without their tops (Keras Applications `mobilenet.py`, `mobilenet_v2.py`, with the
 * Keras 2 stems: an explicit `conv1_pad` / `Conv1_pad` zero padding before a 'valid' stride-2 conv, which is
 * what the ImageNet weight files were trained with). Width multiplier `alpha` as in Keras (the paper used
 * V1 α = 0.25 and V2 α = 0.35; the published parameter counts are for α = 1: 3,228,864 and 2,257,984).
 */

import { correctPad, channels, type KerasGraph, type Sym } from './keras-graph.js';

/** MobileNet V1 blocks after the stem: [pointwise filters, stride]. */
const V1_BLOCKS: readonly (readonly [number, number])[] = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [512, 1],
  [1024, 2],
  [1024, 1],
];

/** Builds MobileNet V1 (depth multiplier 1) on `input`; returns `conv_pw_13_relu`. */
export function mobilenetBase(input: Sym, g: KerasGraph, alpha = 1): Sym {
  let x = g.zeroPad(input, [[0, 1], [0, 1]], 'conv1_pad');
  x = g.conv(x, { filters: Math.trunc(32 * alpha), kernel: 3, strides: 2, padding: 'valid', useBias: false, name: 'conv1' });
  x = g.bn(x, { name: 'conv1_bn' });
  x = g.relu6(x, 'conv1_relu');
  V1_BLOCKS.forEach(([filters, stride], i) => {
    const id = i + 1;
    if (stride !== 1) x = g.zeroPad(x, [[0, 1], [0, 1]], `conv_pad_${id}`);
    x = g.depthwise(x, { kernel: 3, strides: stride, padding: stride === 1 ? 'same' : 'valid', useBias: false, name: `conv_dw_${id}` });
    x = g.bn(x, { name: `conv_dw_${id}_bn` });
    x = g.relu6(x, `conv_dw_${id}_relu`);
    x = g.conv(x, { filters: Math.trunc(filters * alpha), kernel: 1, padding: 'same', useBias: false, name: `conv_pw_${id}` });
    x = g.bn(x, { name: `conv_pw_${id}_bn` });
    x = g.relu6(x, `conv_pw_${id}_relu`);
  });
  return x;
}

/** Keras `_make_divisible(v, divisor)`: round to a multiple of `divisor`, never more than 10 % down. */
export function makeDivisible(v: number, divisor = 8, minValue = divisor): number {
  let n = Math.max(minValue, Math.trunc((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/** MobileNet V2 inverted residual blocks: [filters, stride, expansion] for block ids 0…16. */
const V2_BLOCKS: readonly (readonly [number, number, number])[] = [
  [16, 1, 1],
  [24, 2, 6],
  [24, 1, 6],
  [32, 2, 6],
  [32, 1, 6],
  [32, 1, 6],
  [64, 2, 6],
  [64, 1, 6],
  [64, 1, 6],
  [64, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [96, 1, 6],
  [160, 2, 6],
  [160, 1, 6],
  [160, 1, 6],
  [320, 1, 6],
];

/** Builds MobileNet V2 on `input`; returns `out_relu`. */
export function mobilenetV2Base(input: Sym, g: KerasGraph, alpha = 1): Sym {
  const bn = (x: Sym, name: string) => g.bn(x, { name, epsilon: 1e-3, momentum: 0.999 });
  let x = g.zeroPad(input, correctPad(input, 3), 'Conv1_pad');
  x = g.conv(x, { filters: makeDivisible(32 * alpha, 8), kernel: 3, strides: 2, padding: 'valid', useBias: false, name: 'Conv1' });
  x = bn(x, 'bn_Conv1');
  x = g.relu6(x, 'Conv1_relu');
  V2_BLOCKS.forEach(([filters, stride, expansion], id) => {
    const inputs = x;
    const inC = channels(inputs);
    const pointwise = makeDivisible(Math.trunc(filters * alpha), 8);
    const prefix = id ? `block_${id}_` : 'expanded_conv_';
    if (id) {
      x = g.conv(x, { filters: expansion * inC, kernel: 1, padding: 'same', useBias: false, name: `${prefix}expand` });
      x = bn(x, `${prefix}expand_BN`);
      x = g.relu6(x, `${prefix}expand_relu`);
    }
    if (stride === 2) x = g.zeroPad(x, correctPad(x, 3), `${prefix}pad`);
    x = g.depthwise(x, { kernel: 3, strides: stride, padding: stride === 1 ? 'same' : 'valid', useBias: false, name: `${prefix}depthwise` });
    x = bn(x, `${prefix}depthwise_BN`);
    x = g.relu6(x, `${prefix}depthwise_relu`);
    x = g.conv(x, { filters: pointwise, kernel: 1, padding: 'same', useBias: false, name: `${prefix}project` });
    x = bn(x, `${prefix}project_BN`);
    if (inC === pointwise && stride === 1) x = g.add([inputs, x], `${prefix}add`);
  });
  // Keras: no alpha on the last conv unless alpha > 1.
  x = g.conv(x, { filters: alpha > 1 ? makeDivisible(1280 * alpha, 8) : 1280, kernel: 1, useBias: false, name: 'Conv_1' });
  x = bn(x, 'Conv_1_bn');
  return g.relu6(x, 'out_relu');
}
