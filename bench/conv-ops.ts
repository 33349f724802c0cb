/**
 * Time of one convolution layer's three kernels — forward (Conv2D), input gradient (Conv2DBackpropInput) and
 * filter gradient (Conv2DBackpropFilter) — on a tfjs backend, for the conv layers of a CBR model at an input
 * size (not a test). Shows which kernel a slow training step spends its time in; bench/conv_ops_torch.py
 * times the same shapes in PyTorch. `node --import tsx bench/conv-ops.ts [--backend webgpu] [--arch cbr_small]
 * [--input 224] [--batch 32] [--reps 5]`. Prints one JSON line per layer and kernel, then a markdown table.
 */
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { BACKEND_PREFERENCES, selectBackend, type BackendPreference } from '../src/inference/backend.js';
import { CBR_SPECS } from '../src/training/models/cbr.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}
const pref = arg('backend', 'webgpu') as BackendPreference;
if (!BACKEND_PREFERENCES.includes(pref)) throw new Error(`--backend: one of ${BACKEND_PREFERENCES.join(', ')}`);
const archKey = arg('arch', 'cbr_small');
const spec = CBR_SPECS[archKey];
if (!spec) throw new Error(`--arch: one of ${Object.keys(CBR_SPECS).join(', ')}`);
const input = Number(arg('input', '224'));
const batch = Number(arg('batch', '32'));
const reps = Number(arg('reps', '5'));
const sel = await selectBackend(pref);

async function time(fn: () => tf.Tensor): Promise<number> {
  for (let i = 0; i < 2; i++) {
    const t = fn();
    await t.data();
    t.dispose();
  }
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const t = fn();
    await t.data();
    t.dispose();
  }
  return (performance.now() - t0) / reps;
}

const rows: string[] = [];
let size = input;
let cin = 3;
const k = spec.kernel;
for (const cout of spec.filters) {
  const out = spec.padding === 'valid' ? size - k + 1 : size;
  const x = tf.randomNormal([batch, size, size, cin]) as tf.Tensor4D;
  const f = tf.randomNormal([k, k, cin, cout]) as tf.Tensor4D;
  const dy = tf.randomNormal([batch, out, out, cout]) as tf.Tensor4D;
  const attrs = { strides: 1, pad: spec.padding, dataFormat: 'NHWC', dilations: 1 };
  const fwd = await time(() => tf.conv2d(x, f, 1, spec.padding));
  const dIn = await time(() => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: x.shape }) as tf.Tensor);
  const dF = await time(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: f.shape }) as tf.Tensor);
  const macs = batch * out * out * k * k * cin * cout;
  const layer = `${size}²×${cin} → ${out}²×${cout}, ${k}×${k}`;
  for (const [kernel, ms] of [['Conv2D', fwd], ['Conv2DBackpropInput', dIn], ['Conv2DBackpropFilter', dF]] as const) {
    console.log(JSON.stringify({ backend: sel.name, arch: archKey, layer, kernel, ms: +ms.toFixed(2), tflops: +((2 * macs) / (ms / 1000) / 1e12).toFixed(3) }));
  }
  rows.push(`| ${layer} | ${fwd.toFixed(1)} | ${dIn.toFixed(1)} | ${dF.toFixed(1)} | ${((2 * macs) / 1e9).toFixed(1)} |`);
  tf.dispose([x, f, dy]);
  size = Math.floor(out / spec.pool);
  cin = cout;
}
console.log('');
console.log(`${sel.name} (${sel.reason}); ${archKey}, input ${input}², batch ${batch}; ms per kernel call (mean of ${reps} after 2 warm-ups)`);
console.log('| layer | Conv2D ms | Conv2DBackpropInput ms | Conv2DBackpropFilter ms | GFLOP per call |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
process.exit(0);
