/**
 * ResNet50V2 without its top (Keras Applications `resnet.py` with `preact=True`, `resnet_v2.py`): the
 * pre-activation bottleneck `block2` stacked 3-4-6-3 (`conv{2..5}_block{i}_…`), then `post_bn`, `post_relu`.
 * 23,564,800 parameters.
 */

import { type KerasGraph, type Sym } from './keras-graph.js';

const EPS = 1.001e-5;

function block2(x: Sym, g: KerasGraph, filters: number, name: string, stride = 1, convShortcut = false): Sym {
  let preact = g.bn(x, { name: `${name}_preact_bn`, epsilon: EPS });
  preact = g.relu(preact, `${name}_preact_relu`);
  const shortcut = convShortcut
    ? g.conv(preact, { filters: 4 * filters, kernel: 1, strides: stride, name: `${name}_0_conv` })
    : stride > 1
      ? g.maxPool(x, 1, stride)
      : x;
  let y = g.conv(preact, { filters, kernel: 1, useBias: false, name: `${name}_1_conv` });
  y = g.bn(y, { name: `${name}_1_bn`, epsilon: EPS });
  y = g.relu(y, `${name}_1_relu`);
  y = g.zeroPad(y, [[1, 1], [1, 1]], `${name}_2_pad`);
  y = g.conv(y, { filters, kernel: 3, strides: stride, useBias: false, name: `${name}_2_conv` });
  y = g.bn(y, { name: `${name}_2_bn`, epsilon: EPS });
  y = g.relu(y, `${name}_2_relu`);
  y = g.conv(y, { filters: 4 * filters, kernel: 1, name: `${name}_3_conv` });
  return g.add([shortcut, y], `${name}_out`);
}

function stack2(x: Sym, g: KerasGraph, filters: number, blocks: number, name: string, stride1 = 2): Sym {
  x = block2(x, g, filters, `${name}_block1`, 1, true);
  for (let i = 2; i < blocks; i++) x = block2(x, g, filters, `${name}_block${i}`);
  return block2(x, g, filters, `${name}_block${blocks}`, stride1);
}

/** Builds ResNet50V2 on `input`; returns `post_relu`. */
export function resnet50v2Base(input: Sym, g: KerasGraph): Sym {
  let x = g.zeroPad(input, [[3, 3], [3, 3]], 'conv1_pad');
  x = g.conv(x, { filters: 64, kernel: 7, strides: 2, name: 'conv1_conv' });
  x = g.zeroPad(x, [[1, 1], [1, 1]], 'pool1_pad');
  x = g.maxPool(x, 3, 2, 'valid', 'pool1_pool');
  x = stack2(x, g, 64, 3, 'conv2');
  x = stack2(x, g, 128, 4, 'conv3');
  x = stack2(x, g, 256, 6, 'conv4');
  x = stack2(x, g, 512, 3, 'conv5', 1);
  x = g.bn(x, { name: 'post_bn', epsilon: EPS });
  return g.relu(x, 'post_relu');
}
