/**
 * DenseNet121 without its top (Keras Applications `densenet.py`): dense blocks of 6, 12, 24, 16 conv blocks
 * (`conv{2..5}_block{i}_{0_bn,0_relu,1_conv,1_bn,1_relu,2_conv,concat}`, growth rate 32) with transition
 * layers `pool{2..4}_{bn,relu,conv,pool}` between them, then `bn`, `relu`. 7,037,504 parameters.
 * Layer names are Keras 3's (`conv1_conv`); the Keras 2 weight file spells the stem `conv1/conv`, which the
 * importer treats as the same name.
 */

import { channels, type KerasGraph, type Sym } from './keras-graph.js';

const EPS = 1.001e-5;
export const DENSENET121_BLOCKS: readonly number[] = [6, 12, 24, 16];

function convBlock(x: Sym, g: KerasGraph, growth: number, name: string): Sym {
  let y = g.bn(x, { name: `${name}_0_bn`, epsilon: EPS });
  y = g.relu(y, `${name}_0_relu`);
  y = g.conv(y, { filters: 4 * growth, kernel: 1, useBias: false, name: `${name}_1_conv` });
  y = g.bn(y, { name: `${name}_1_bn`, epsilon: EPS });
  y = g.relu(y, `${name}_1_relu`);
  y = g.conv(y, { filters: growth, kernel: 3, padding: 'same', useBias: false, name: `${name}_2_conv` });
  return g.concat([x, y], `${name}_concat`);
}

function transition(x: Sym, g: KerasGraph, reduction: number, name: string): Sym {
  x = g.bn(x, { name: `${name}_bn`, epsilon: EPS });
  x = g.relu(x, `${name}_relu`);
  x = g.conv(x, { filters: Math.trunc(channels(x) * reduction), kernel: 1, useBias: false, name: `${name}_conv` });
  return g.avgPool(x, 2, 2, 'valid', `${name}_pool`);
}

/** Builds DenseNet121 on `input`; returns `relu`. */
export function densenet121Base(input: Sym, g: KerasGraph): Sym {
  let x = g.zeroPad(input, [[3, 3], [3, 3]]);
  x = g.conv(x, { filters: 64, kernel: 7, strides: 2, useBias: false, name: 'conv1_conv' });
  x = g.bn(x, { name: 'conv1_bn', epsilon: EPS });
  x = g.relu(x, 'conv1_relu');
  x = g.zeroPad(x, [[1, 1], [1, 1]]);
  x = g.maxPool(x, 3, 2, 'valid', 'pool1');
  DENSENET121_BLOCKS.forEach((n, b) => {
    for (let i = 1; i <= n; i++) x = convBlock(x, g, 32, `conv${b + 2}_block${i}`);
    if (b < DENSENET121_BLOCKS.length - 1) x = transition(x, g, 0.5, `pool${b + 2}`);
  });
  x = g.bn(x, { name: 'bn', epsilon: EPS });
  return g.relu(x, 'relu');
}
