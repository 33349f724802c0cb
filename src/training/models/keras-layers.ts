/**
 * Keras layers that tf.layers lacks, as small custom layers with registered class names (so that a saved
 * model directory holding them loads with `tf.loadLayersModel` once this module is imported).
 *
 * tf.layers already has what the other Keras Applications need: asymmetric `zeroPadding2d` (MobileNet,
 * NASNet's `correct_pad`), `cropping2D` (NASNet's adjust block), `reLU({ maxValue: 6 })`, depthwise and
 * separable convolutions. The one gap is InceptionResNetV2's residual scaling, a `Lambda` in Keras 2
 * (`x + scale · r`, layer named `block35_1` …) and `CustomScaleLayer` in Keras 3.
 */

import * as tf from '@tensorflow/tfjs';

export interface CustomScaleLayerArgs {
  name?: string;
  trainable?: boolean;
  /** Residual scale: output = inputs[0] + scale · inputs[1]. */
  scale: number;
}

/** Keras 3 `inception_resnet_v2.CustomScaleLayer`: `inputs[0] + inputs[1] * scale`; no weights. */
export class CustomScaleLayer extends tf.layers.Layer {
  static readonly className = 'CustomScaleLayer';
  readonly scale: number;

  constructor(args: CustomScaleLayerArgs) {
    super({ name: args.name, trainable: args.trainable });
    if (!Number.isFinite(args.scale)) throw new RangeError(`CustomScaleLayer: finite scale expected, got ${args.scale}`);
    this.scale = args.scale;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shapes = inputShape as tf.Shape[];
    if (!Array.isArray(shapes[0]) || shapes.length !== 2) throw new Error(`${this.name}: expects two inputs`);
    return shapes[0];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const [x, r] = inputs as tf.Tensor[];
      return tf.add(x, tf.mul(r, this.scale));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), scale: this.scale };
  }
}

tf.serialization.registerClass(CustomScaleLayer);

/**
 * Training through BatchNormalization layers without γ (`scale: false`) or β (`center: false`).
 *
 * Keras' InceptionV3 and InceptionResNetV2 use `BatchNormalization(scale=False)` after every convolution, and
 * tf.layers accepts that, but (tfjs-layers 4.22 normalization.ts) in training mode its `call` reads
 * `this.gamma.read()` unconditionally ("Cannot read properties of undefined (reading 'read')"), and in
 * inference mode — a frozen base at depth 0 — it calls the FusedBatchNorm kernel without a scale, whose
 * gradient config saves the missing input, so recording the op on a gradient tape fails ("Cannot read
 * properties of undefined (reading 'dataId')"). While such a layer runs, this lends it a constant γ = 1 /
 * β = 0 — what `scale: false` / `center: false` mean — and takes it back afterwards: no weight is added
 * (parameter counts and Keras weight files are unchanged) and nothing is serialised. Patched on the class,
 * so that layers of models loaded from a model directory are covered too.
 */
function patchBatchNormTraining(): void {
  const proto = Object.getPrototypeOf(tf.layers.batchNormalization({})) as {
    call: (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];
    __saxScaleless?: boolean;
  };
  if (proto.__saxScaleless) return;
  const original = proto.call;
  type Readable = { read(): tf.Tensor } | null | undefined;
  proto.call = function (this: { gamma: Readable; beta: Readable; movingMean: { shape: number[] } }, inputs, kwargs) {
    if (this.gamma && this.beta) return original.call(this, inputs, kwargs);
    const { gamma, beta } = this;
    const shape = this.movingMean.shape;
    if (!gamma) this.gamma = { read: () => tf.ones(shape) };
    if (!beta) this.beta = { read: () => tf.zeros(shape) };
    try {
      return original.call(this, inputs, kwargs);
    } finally {
      this.gamma = gamma;
      this.beta = beta;
    }
  };
  proto.__saxScaleless = true;
}

patchBatchNormTraining();
