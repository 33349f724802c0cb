/**
 * A small helper for building Keras Applications graphs with tf.layers: layers get the names Keras gives them
 * (explicit names where the Keras source sets one; otherwise Keras 2's auto-names `conv2d_1`, `conv2d_2`, …,
 * numbered from 1 per layer type in creation order, which is what the keras-applications `*_notop.h5` files
 * written with Keras 2.0–2.2 hold), and every kernel gets a seeded Glorot-uniform initialiser so that
 * (architecture, input size, seed) fixes the initial weights. Builds graphs only: no I/O.
 */

import * as tf from '@tensorflow/tfjs';
import { layerSeed } from './cbr.js';

export type Sym = tf.SymbolicTensor;
export type Pad2 = [[number, number], [number, number]];

export interface ConvOptions {
  filters: number;
  kernel: number | [number, number];
  strides?: number;
  padding?: 'same' | 'valid';
  useBias?: boolean;
  activation?: 'relu';
  name?: string;
}

export interface BnOptions {
  name?: string;
  epsilon?: number;
  momentum?: number;
  /** false: no γ (Keras `scale=False`, as in InceptionV3 and InceptionResNetV2). */
  scale?: boolean;
}

/** Graph builder with Keras-style naming and seeded initialisers. */
export class KerasGraph {
  private readonly counters = new Map<string, number>();
  private initIndex = 0;

  constructor(readonly seed: number) {}

  /** Keras 2 auto-name: `<prefix>_<n>`, n counting from 1 per prefix. */
  auto(prefix: string): string {
    const n = (this.counters.get(prefix) ?? 0) + 1;
    this.counters.set(prefix, n);
    return `${prefix}_${n}`;
  }

  init(): ReturnType<typeof tf.initializers.glorotUniform> {
    return tf.initializers.glorotUniform({ seed: layerSeed(this.seed, this.initIndex++) });
  }

  conv(x: Sym, o: ConvOptions): Sym {
    return tf.layers
      .conv2d({
        name: o.name ?? this.auto('conv2d'),
        filters: o.filters,
        kernelSize: o.kernel,
        strides: o.strides ?? 1,
        padding: o.padding ?? 'valid',
        useBias: o.useBias ?? true,
        activation: o.activation,
        kernelInitializer: this.init(),
        biasInitializer: 'zeros',
      })
      .apply(x) as Sym;
  }

  depthwise(x: Sym, o: { kernel: number; strides?: number; padding?: 'same' | 'valid'; useBias?: boolean; depthMultiplier?: number; name: string }): Sym {
    return tf.layers
      .depthwiseConv2d({
        name: o.name,
        kernelSize: o.kernel,
        strides: o.strides ?? 1,
        padding: o.padding ?? 'valid',
        useBias: o.useBias ?? true,
        depthMultiplier: o.depthMultiplier ?? 1,
        depthwiseInitializer: this.init(),
      })
      .apply(x) as Sym;
  }

  separable(x: Sym, o: { filters: number; kernel: number; strides?: number; padding?: 'same' | 'valid'; useBias?: boolean; name: string }): Sym {
    return tf.layers
      .separableConv2d({
        name: o.name,
        filters: o.filters,
        kernelSize: o.kernel,
        strides: o.strides ?? 1,
        padding: o.padding ?? 'valid',
        useBias: o.useBias ?? true,
        depthwiseInitializer: this.init(),
        pointwiseInitializer: this.init(),
      })
      .apply(x) as Sym;
  }

  bn(x: Sym, o: BnOptions = {}): Sym {
    return tf.layers
      .batchNormalization({
        name: o.name ?? this.auto('batch_normalization'),
        axis: -1,
        epsilon: o.epsilon ?? 1e-3,
        momentum: o.momentum ?? 0.99,
        scale: o.scale ?? true,
      })
      .apply(x) as Sym;
  }

  relu(x: Sym, name?: string): Sym {
    return tf.layers.activation({ name: name ?? this.auto('activation'), activation: 'relu' }).apply(x) as Sym;
  }

  /** Keras `ReLU(6.)` (MobileNet V1/V2). */
  relu6(x: Sym, name: string): Sym {
    return tf.layers.reLU({ name, maxValue: 6 }).apply(x) as Sym;
  }

  maxPool(x: Sym, pool: number, strides: number, padding: 'same' | 'valid' = 'valid', name?: string): Sym {
    return tf.layers.maxPooling2d({ name: name ?? this.auto('max_pooling2d'), poolSize: pool, strides, padding }).apply(x) as Sym;
  }

  avgPool(x: Sym, pool: number, strides: number, padding: 'same' | 'valid' = 'valid', name?: string): Sym {
    return tf.layers.averagePooling2d({ name: name ?? this.auto('average_pooling2d'), poolSize: pool, strides, padding }).apply(x) as Sym;
  }

  zeroPad(x: Sym, padding: Pad2, name?: string): Sym {
    return tf.layers.zeroPadding2d({ name: name ?? this.auto('zero_padding2d'), padding }).apply(x) as Sym;
  }

  crop(x: Sym, cropping: Pad2, name?: string): Sym {
    return tf.layers.cropping2D({ name: name ?? this.auto('cropping2d'), cropping }).apply(x) as Sym;
  }

  concat(xs: Sym[], name?: string): Sym {
    return tf.layers.concatenate({ name: name ?? this.auto('concatenate'), axis: -1 }).apply(xs) as Sym;
  }

  add(xs: Sym[], name?: string): Sym {
    return tf.layers.add({ name: name ?? this.auto('add') }).apply(xs) as Sym;
  }
}

/** Spatial size (rows) of an NHWC symbolic tensor. */
export function spatial(x: Sym): number {
  const s = x.shape[1];
  if (s == null) throw new Error(`tensor ${x.name}: unknown spatial size`);
  return s;
}

/** Channels of an NHWC symbolic tensor. */
export function channels(x: Sym): number {
  const c = x.shape[x.shape.length - 1];
  if (c == null) throw new Error(`tensor ${x.name}: unknown channel count`);
  return c;
}

/**
 * Keras `imagenet_utils.correct_pad(inputs, kernel_size)`: the zero padding that makes a stride-2 'valid'
 * convolution behave like TF's 'same' one: ((k//2 − adjust, k//2), …) with adjust = 1 − size % 2.
 */
export function correctPad(x: Sym, kernel: number): Pad2 {
  const rows = x.shape[1];
  const cols = x.shape[2];
  const adjust = [rows == null ? 1 : 1 - (rows % 2), cols == null ? 1 : 1 - (cols % 2)];
  const c = Math.floor(kernel / 2);
  return [
    [c - adjust[0], c],
    [c - adjust[1], c],
  ];
}
