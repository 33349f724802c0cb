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
