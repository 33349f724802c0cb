/**
 * NASNetMobile without its top (Keras Applications `nasnet.py`, NASNet-A 4 @ 1056: penultimate filters 1056,
 * 4 normal cells per stage, stem filters 32, filter multiplier 2, `skip_reduction=False`). Cells:
 * `reduction_*_stem_1`, `…_stem_2`, normal cells `0`…`3`, `reduce_4`, `5`…`8`, `reduce_8`, `9`…`12`, then a
 * final ReLU. Weighted layers carry Keras' names (`normal_conv_1_12`, `separable_conv_1_normal_left1_12`,
 * `adjust_conv_projection_12`, `adjust_bn_12`, …); the unnamed ReLUs, paddings, croppings, concatenations
 * and adds get Keras 2 auto-names. 4,269,716 parameters.
 */

import { channels, correctPad, spatial, type KerasGraph, type Sym } from './keras-graph.js';

const BN = { momentum: 0.9997, epsilon: 1e-3 } as const;

function separableConvBlock(g: KerasGraph, ip: Sym, filters: number, kernel: number, strides: number, blockId: string): Sym {
  let x = g.relu(ip);
  let pad: 'same' | 'valid' = 'same';
  if (strides === 2) {
    x = g.zeroPad(x, correctPad(x, kernel), `separable_conv_1_pad_${blockId}`);
    pad = 'valid';
  }
  x = g.separable(x, { filters, kernel, strides, padding: pad, useBias: false, name: `separable_conv_1_${blockId}` });
  x = g.bn(x, { ...BN, name: `separable_conv_1_bn_${blockId}` });
  x = g.relu(x);
  x = g.separable(x, { filters, kernel, padding: 'same', useBias: false, name: `separable_conv_2_${blockId}` });
  return g.bn(x, { ...BN, name: `separable_conv_2_bn_${blockId}` });
}

/** Keras `_adjust_block`: brings the previous path `p` to the shape of `ip` (factorised reduction or 1×1 projection). */
function adjustBlock(g: KerasGraph, p: Sym | null, ip: Sym, filters: number, blockId: string): Sym {
  if (p === null) return ip;
  if (spatial(p) !== spatial(ip)) {
    const r = g.relu(p, `adjust_relu_1_${blockId}`);
    let p1 = g.avgPool(r, 1, 2, 'valid', `adjust_avg_pool_1_${blockId}`);
    p1 = g.conv(p1, { filters: Math.floor(filters / 2), kernel: 1, padding: 'same', useBias: false, name: `adjust_conv_1_${blockId}` });
    let p2 = g.zeroPad(r, [[0, 1], [0, 1]]);
    p2 = g.crop(p2, [[1, 0], [1, 0]]);
    p2 = g.avgPool(p2, 1, 2, 'valid', `adjust_avg_pool_2_${blockId}`);
    p2 = g.conv(p2, { filters: Math.floor(filters / 2), kernel: 1, padding: 'same', useBias: false, name: `adjust_conv_2_${blockId}` });
    return g.bn(g.concat([p1, p2]), { ...BN, name: `adjust_bn_${blockId}` });
  }
  if (channels(p) !== filters) {
    let q = g.relu(p);
    q = g.conv(q, { filters, kernel: 1, padding: 'same', useBias: false, name: `adjust_conv_projection_${blockId}` });
    return g.bn(q, { ...BN, name: `adjust_bn_${blockId}` });
  }
  return p;
}

function normalCell(g: KerasGraph, ip: Sym, pIn: Sym | null, filters: number, id: string): [Sym, Sym] {
  const p = adjustBlock(g, pIn, ip, filters, id);
  let h = g.relu(ip);
  h = g.conv(h, { filters, kernel: 1, padding: 'same', useBias: false, name: `normal_conv_1_${id}` });
  h = g.bn(h, { ...BN, name: `normal_bn_1_${id}` });

  const x11 = separableConvBlock(g, h, filters, 5, 1, `normal_left1_${id}`);
  const x12 = separableConvBlock(g, p, filters, 3, 1, `normal_right1_${id}`);
  const x1 = g.add([x11, x12], `normal_add_1_${id}`);

  const x21 = separableConvBlock(g, p, filters, 5, 1, `normal_left2_${id}`);
  const x22 = separableConvBlock(g, p, filters, 3, 1, `normal_right2_${id}`);
  const x2 = g.add([x21, x22], `normal_add_2_${id}`);

  const x3 = g.add([g.avgPool(h, 3, 1, 'same', `normal_left3_${id}`), p], `normal_add_3_${id}`);

  const x41 = g.avgPool(p, 3, 1, 'same', `normal_left4_${id}`);
  const x42 = g.avgPool(p, 3, 1, 'same', `normal_right4_${id}`);
  const x4 = g.add([x41, x42], `normal_add_4_${id}`);

  const x5 = g.add([separableConvBlock(g, h, filters, 3, 1, `normal_left5_${id}`), h], `normal_add_5_${id}`);

  return [g.concat([p, x1, x2, x3, x4, x5], `normal_concat_${id}`), ip];
}

function reductionCell(g: KerasGraph, ip: Sym, pIn: Sym | null, filters: number, id: string): [Sym, Sym] {
  const p = adjustBlock(g, pIn, ip, filters, id);
  let h = g.relu(ip);
  h = g.conv(h, { filters, kernel: 1, padding: 'same', useBias: false, name: `reduction_conv_1_${id}` });
  h = g.bn(h, { ...BN, name: `reduction_bn_1_${id}` });
  const h3 = g.zeroPad(h, correctPad(h, 3), `reduction_pad_1_${id}`);

  const x11 = separableConvBlock(g, h, filters, 5, 2, `reduction_left1_${id}`);
  const x12 = separableConvBlock(g, p, filters, 7, 2, `reduction_right1_${id}`);
  const x1 = g.add([x11, x12], `reduction_add_1_${id}`);

  const x21 = g.maxPool(h3, 3, 2, 'valid', `reduction_left2_${id}`);
  const x22 = separableConvBlock(g, p, filters, 7, 2, `reduction_right2_${id}`);
  const x2 = g.add([x21, x22], `reduction_add_2_${id}`);

  const x31 = g.avgPool(h3, 3, 2, 'valid', `reduction_left3_${id}`);
  const x32 = separableConvBlock(g, p, filters, 5, 2, `reduction_right3_${id}`);
  const x3 = g.add([x31, x32], `reduction_add3_${id}`);

  const x4 = g.add([x2, g.avgPool(x1, 3, 1, 'same', `reduction_left4_${id}`)]);

  const x51 = separableConvBlock(g, x1, filters, 3, 1, `reduction_left4_${id}`);
  const x52 = g.maxPool(h3, 3, 2, 'valid', `reduction_right5_${id}`);
  const x5 = g.add([x51, x52], `reduction_add4_${id}`);

  return [g.concat([x2, x3, x4, x5], `reduction_concat_${id}`), ip];
}

export interface NasnetConfig {
  penultimateFilters: number;
  numBlocks: number;
  stemBlockFilters: number;
  skipReduction: boolean;
  filterMultiplier: number;
}

export const NASNET_MOBILE: NasnetConfig = { penultimateFilters: 1056, numBlocks: 4, stemBlockFilters: 32, skipReduction: false, filterMultiplier: 2 };

/** Builds a NASNet-A base on `input` (NASNetMobile by default); returns the final ReLU. */
export function nasnetBase(input: Sym, g: KerasGraph, cfg: NasnetConfig = NASNET_MOBILE): Sym {
  const m = cfg.filterMultiplier;
  const filters = Math.floor(cfg.penultimateFilters / 24);
  let x = g.conv(input, { filters: cfg.stemBlockFilters, kernel: 3, strides: 2, padding: 'valid', useBias: false, name: 'stem_conv1' });
  x = g.bn(x, { ...BN, name: 'stem_bn1' });
  let p: Sym | null = null;
  [x, p] = reductionCell(g, x, p, Math.floor(filters / m ** 2), 'stem_1');
  [x, p] = reductionCell(g, x, p, Math.floor(filters / m), 'stem_2');
  for (let i = 0; i < cfg.numBlocks; i++) [x, p] = normalCell(g, x, p, filters, `${i}`);
  let p0: Sym;
  [x, p0] = reductionCell(g, x, p, filters * m, `reduce_${cfg.numBlocks}`);
  p = cfg.skipReduction ? p : p0;
  for (let i = 0; i < cfg.numBlocks; i++) [x, p] = normalCell(g, x, p, filters * m, `${cfg.numBlocks + i + 1}`);
  [x, p0] = reductionCell(g, x, p, filters * m ** 2, `reduce_${2 * cfg.numBlocks}`);
  p = cfg.skipReduction ? p : p0;
  for (let i = 0; i < cfg.numBlocks; i++) [x, p] = normalCell(g, x, p, filters * m ** 2, `${2 * cfg.numBlocks + i + 1}`);
  return g.relu(x);
}
