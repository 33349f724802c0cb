/**
 * Probe (not a test, not product code): can tfjs-WASM, with the product's gradient kernels, train the CPU-sized
 * U-Net of the GPU arms (`unet_t64` in scripts/gpu/ceiling.py: 8-16-32-64 filters, 64² input, 2.5D, 4 classes),
 * and how fast? Checks the gradients of a few layers against the pure-JS cpu backend, then times training
 * steps (forward, backward, SGD) at batch 16.
 *
 *   node --import tsx docs/model-runs/gpu-arms/wasm-unet-probe.ts [--steps 20]
 */
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../src/inference/backend.js';
import { registerWasmGradients } from '../../../src/training/wasm-gradients.js';

const steps = Number(process.argv[process.argv.indexOf('--steps') + 1] || 20);
const widths = [8, 16, 32, 64];
const size = 64;
const batch = 16;

function block(x: tf.SymbolicTensor, w: number): tf.SymbolicTensor {
  for (let i = 0; i < 2; i++) {
    x = tf.layers.conv2d({ filters: w, kernelSize: 3, padding: 'same', useBias: false }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.batchNormalization().apply(x) as tf.SymbolicTensor;
    x = tf.layers.reLU().apply(x) as tf.SymbolicTensor;
  }
  return x;
}

function unet(): tf.LayersModel {
  const input = tf.input({ shape: [size, size, 3] });
  const skips: tf.SymbolicTensor[] = [];
  let x = input;
  for (const w of widths) {
    x = block(x, w);
    skips.push(x);
    x = tf.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  }
  x = block(x, widths[widths.length - 1] * 2);
  for (const w of [...widths].reverse()) {
    const up = tf.layers.conv2dTranspose({ filters: w, kernelSize: 2, strides: 2 }).apply(x) as tf.SymbolicTensor;
    x = block(tf.layers.concatenate().apply([up, skips.pop()!]) as tf.SymbolicTensor, w);
  }
  const out = tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'softmax' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

function lossOf(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  const p = model.apply(x, { training: true }) as tf.Tensor;
  return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(tf.add(p, 1e-7))), -1))) as tf.Scalar;
}

async function gradsOn(backend: 'cpu' | 'wasm', weights: tf.Tensor[] | null): Promise<{ g: Float32Array[]; weights: tf.Tensor[] }> {
  await tf.setBackend(backend);
  tf.engine().startScope();
  const model = unet();
  if (weights) model.setWeights(weights);
  const x = tf.randomUniform([2, size, size, 3], -1, 1, 'float32', 7);
  const labels = tf.randomUniform([2, size, size], 0, 4, 'int32', 8);
  const y = tf.oneHot(labels, 4);
  const { grads } = tf.variableGrads(() => lossOf(model, x, y));
  // LayerVariable.val is the tf.Variable whose name keys variableGrads' result
  const g = await Promise.all(model.trainableWeights.map((w) => grads[(w as any).val.name].data() as Promise<Float32Array>));
  const w = model.getWeights().map((t) => tf.keep(t.clone()));
  tf.engine().endScope();
  return { g, weights: w };
}

registerWasmGradients();
await selectBackend('wasm');
const cpuRun = await gradsOn('cpu', null);
const wasmRun = await gradsOn('wasm', cpuRun.weights);
let worst = 0;
cpuRun.g.forEach((a, i) => {
  const b = wasmRun.g[i];
  let num = 0;
  let den = 0;
  for (let j = 0; j < a.length; j++) {
    num = Math.max(num, Math.abs(a[j] - b[j]));
    den = Math.max(den, Math.abs(a[j]));
  }
  worst = Math.max(worst, num / (den || 1));
});
console.log(`gradients wasm vs cpu: ${cpuRun.g.length} variables, worst max|Δ|/max|g| = ${worst.toExponential(2)}`);

await tf.setBackend('wasm');
const model = unet();
const opt = tf.train.momentum(0.01, 0.9, true);
const x = tf.randomUniform([batch, size, size, 3], -1, 1);
const y = tf.oneHot(tf.randomUniform([batch, size, size], 0, 4, 'int32'), 4);
const step = () => {
  const loss = opt.minimize(() => lossOf(model, x, y), true) as tf.Scalar;
  const v = loss.dataSync()[0];
  loss.dispose();
  return v;
};
for (let i = 0; i < 3; i++) step();
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
const ms = (performance.now() - t0) / steps;
console.log(`unet_t64 on ${tf.getBackend()}: ${model.countParams()} parameters, batch ${batch}: ${ms.toFixed(0)} ms/step, ${((batch * 1000) / ms).toFixed(1)} samples/s (one thread)`);
