/**
 * Fine-tuning depth (Ho & Kim 2021; notes/paper.md §7), as rules over layer names — pure, no I/O.
 *
 * - depth 0: the ImageNet base is frozen, only the head (`gap`, `fc1`, `dropout`, `predictions`) trains;
 * - depth 1: starts from the final depth-0 model and also trains the base's last convolutional block, the
 *   layers whose names match `APPLICATIONS[arch].depth1` (docs/training.md has the table);
 * - 'full': everything trains (random initialisation, "from scratch"; what CBR models always do).
 *
 * The paper's code froze `model.layers[:depths[i]]` by index; the name rules select exactly the same weighted
 * layers (test/unit/training-imagenet.test.ts checks them against the paper's indices).
 *
 * Frozen BatchNormalization layers run in inference mode (their ImageNet moving statistics, never updated),
 * as in tf.keras 2: tf.layers' BN would otherwise normalise with batch statistics and overwrite the moving
 * ones during training even when `trainable` is false. (Standalone Keras 2.2, which the paper used, kept the
 * moving statistics but still normalised frozen BN with batch statistics while training; VGG16 has no BN.)
 */

import type * as tf from '@tensorflow/tfjs';
import { APPLICATIONS, applicationKey, HEAD_LAYERS } from './applications.js';

export type FineTuneDepth = 0 | 1 | 'full';

type CallFn = (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];
const inferenceModeBn = new WeakSet<object>();

/** Makes a BatchNormalization layer ignore `training: true` (frozen) or restores its own `call`. */
function setBnInferenceMode(layer: tf.layers.Layer, frozen: boolean): void {
  if (layer.getClassName() !== 'BatchNormalization') return;
  const l = layer as unknown as { call: CallFn };
  if (frozen && !inferenceModeBn.has(layer)) {
    const own = l.call.bind(layer);
    l.call = (inputs, kwargs) => own(inputs, { ...kwargs, training: false });
    inferenceModeBn.add(layer);
  } else if (!frozen && inferenceModeBn.has(layer)) {
    delete (l as { call?: CallFn }).call; // back to the prototype's call
    inferenceModeBn.delete(layer);
  }
}

/** Whether a BatchNormalization layer currently runs in inference mode because it is frozen. */
export function isBnInInferenceMode(layer: tf.layers.Layer): boolean {
  return inferenceModeBn.has(layer);
}

export interface DepthResult {
  depth: FineTuneDepth;
  /** Names of the layers with weights that now train. */
  trainableLayers: string[];
  /** Names of the layers with weights that are frozen. */
  frozenLayers: string[];
}

/** Whether `layerName` trains at `depth` for `arch` (CBR and unknown-to-the-registry layers: head rule only). */
export function isTrainableAt(arch: string, layerName: string, depth: FineTuneDepth): boolean {
  if (depth === 'full' || HEAD_LAYERS.includes(layerName)) return true;
  const key = applicationKey(arch);
  if (!key) return true; // CBR: no pretrained base, everything trains
  return depth === 1 && APPLICATIONS[key].depth1.test(layerName);
}

/**
 * Sets `trainable` on every layer of `model` for `depth` and returns which weighted layers train. Throws for
 * depth 0/1 on a CBR model (there is no pretrained base to freeze) or when depth 1 selects no layer (a rule
 * that no longer matches the graph).
 */
export function applyDepth(model: tf.LayersModel, arch: string, depth: FineTuneDepth): DepthResult {
  const key = applicationKey(arch);
  if (!key && depth !== 'full') throw new RangeError(`depth ${depth}: '${arch}' has no pretrained base to freeze (use depth 'full')`);
  const trainableLayers: string[] = [];
  const frozenLayers: string[] = [];
  for (const layer of model.layers) {
    const on = isTrainableAt(arch, layer.name, depth);
    layer.trainable = on;
    setBnInferenceMode(layer, !on);
    if (layer.weights.length === 0) continue;
    (on ? trainableLayers : frozenLayers).push(layer.name);
  }
  if (depth === 1 && !trainableLayers.some((n) => !HEAD_LAYERS.includes(n))) {
    throw new Error(`depth 1 for ${arch}: the rule ${String(APPLICATIONS[key!].depth1)} matches no base layer of model '${model.name}'`);
  }
  return { depth, trainableLayers, frozenLayers };
}
