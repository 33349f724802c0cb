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
 */

import type * as tf from '@tensorflow/tfjs';
import { APPLICATIONS, applicationKey, HEAD_LAYERS } from './applications.js';

export type FineTuneDepth = 0 | 1 | 'full';

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
    if (layer.weights.length === 0) continue;
    (on ? trainableLayers : frozenLayers).push(layer.name);
  }
  if (depth === 1 && !trainableLayers.some((n) => !HEAD_LAYERS.includes(n))) {
    throw new Error(`depth 1 for ${arch}: the rule ${String(APPLICATIONS[key!].depth1)} matches no base layer of model '${model.name}'`);
  }
  return { depth, trainableLayers, frozenLayers };
}
