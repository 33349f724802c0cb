/**
 * VGG16 without its top (Keras Applications `vgg16.py`): five blocks of 3×3 'same' convs with ReLU
 * (`block{b}_conv{i}`) each followed by a 2×2/2 max-pool (`block{b}_pool`). 14,714,688 parameters.
 */

import { type KerasGraph, type Sym } from './keras-graph.js';

const VGG16_BLOCKS: readonly (readonly number[])[] = [
  [64, 64],
  [128, 128],
  [256, 256, 256],
  [512, 512, 512],
  [512, 512, 512],
];

/** Builds the VGG16 base on `input`; returns `block5_pool`. */
export function vgg16Base(input: Sym, g: KerasGraph): Sym {
  let x = input;
  VGG16_BLOCKS.forEach((filters, b) => {
    filters.forEach((f, i) => {
      x = g.conv(x, { filters: f, kernel: 3, padding: 'same', activation: 'relu', name: `block${b + 1}_conv${i + 1}` });
    });
    x = g.maxPool(x, 2, 2, 'valid', `block${b + 1}_pool`);
  });
  return x;
}
