/**
 * The GPU path checked on software Vulkan (issue 5 item 7): a few SGD-Nesterov steps of CBR-Compact at 32²
 * on the webgpu backend (Dawn through the `webgpu` package; in CI Mesa's lavapipe from bookworm-backports,
 * which .ci/run installs) and on the wasm backend with our registered gradient kernels, from identical
 * initial weights and data, then one Grad-CAM forward. A missing adapter is a failure, not a skip: CI
 * provides one.
 *
 * Both backends run in this one process, one after the other (tfjs switches backends; each run builds its
 * own model and copies the shared initial weights in as arrays).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, type BackendName } from '../../src/inference/backend.js';
import { gradCamMaps, splitForGradCam } from '../../src/inference/gradcam.js';
import { installFastBatchNormGradient } from '../../src/training/models/batchnorm-gradient.js';
import { buildModel } from '../../src/training/models/index.js';
import { KerasSgd, trainableVariables, trainStep } from '../../src/training/train.js';

const ARCH = 'cbr_compact';
const SIZE = 32;
const BATCH = 4;
const STEPS = 3;
const LABELS = [0, 1, 2, 1];
/** Fixed seed of the dropout masks: tf.dropout draws them in JS (seedrandom), the same on every backend. */
const DROPOUT_SEED = 4321;

/**
 * Tolerances. Both backends compute in float32 with different kernels (XNNPACK vs WGSL shaders; other
 * summation orders in convolutions, reductions and BN statistics), so results differ by rounding: a few
 * float32 ulps per op (≈ 1e-7 relative), amplified along 3 steps of a deep-ish graph to ~1e-5. 1e-3
 * relative leaves two orders of margin and still catches any wrong kernel (a missing transpose, a wrong
 * stride or padding gives O(1) differences). Updates are compared, not weights: w₃ − w₀ is what training
 * changed, and comparing the weights themselves would hide an update error under |w₀|.
 */
const REL_TOL = 1e-3;
/**
 * Plus an absolute floor for updates that are rounding noise: the conv biases in front of BN get a zero
 * gradient up to rounding (their updates are ~1e-9), and w₃ − w₀ of a weight near 1 carries about one ulp
 * (1.2e-7) per step. 1e-6 is a few ulps there, and three orders below the real updates (1e-3 to 5e-2).
 */
const ABS_FLOOR = 1e-6;
/**
 * Grad-CAM split layer: after the last max-pool, not the default `block4_relu` before it. About half of the
 * ReLU outputs are exactly 0, and MaxPoolGrad breaks ties in all-zero windows differently per backend (cpu:
 * the first position, webgpu: the last, wasm: none), so ∂score/∂(block4_relu) — and the CAM there — is
 * backend-dependent by design. Training does not see it: the ReLU's gradient at 0 is 0.
 */
const CAM_LAYER = 'block4_pool';

interface Run {
  backend: string;
  names: string[];
  losses: number[];
  deltas: Float32Array[];
  cams: Float32Array;
}

/** Deterministic inputs (mulberry32): smooth blobs plus noise, the same Float32Array for both backends. */
function fixedBatch(): Float32Array {
  let a = 0x5eed;
  const rand = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const x = new Float32Array(BATCH * SIZE * SIZE * 3);
  for (let n = 0; n < BATCH; n++) {
    const r0 = 4 + 3 * n;
    for (let i = 0; i < SIZE; i++) {
      for (let j = 0; j < SIZE; j++) {
        const d = Math.hypot(i - SIZE / 2, j - SIZE / 2);
        const v = (d < r0 ? 1 : 0) + 0.2 * (rand() - 0.5);
        for (let c = 0; c < 3; c++) x[((n * SIZE + i) * SIZE + j) * 3 + c] = v;
      }
    }
  }
  return x;
}

async function trainOn(name: BackendName, initial: Float32Array[], xData: Float32Array): Promise<Run> {
  const sel = await selectBackend(name);
  expect(tf.getBackend()).toBe(name);
  const model = buildModel(ARCH, { inputSize: SIZE, seed: 1 });
  (model.getLayer('dropout') as unknown as { seed?: number }).seed = DROPOUT_SEED;
  const weights = model.getWeights();
  const start = initial.map((w, i) => tf.tensor(w, weights[i].shape));
  model.setWeights(start);
  tf.dispose(start);
  const opt = new KerasSgd(trainableVariables(model), { learningRate: 0.01, momentum: 0.9, nesterov: true, decay: 1e-6 });
  const x = tf.tensor4d(xData, [BATCH, SIZE, SIZE, 3]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d(LABELS, 'int32'), 3).toFloat()) as tf.Tensor2D;
  const losses: number[] = [];
  for (let s = 0; s < STEPS; s++) losses.push((await trainStep(model, opt, x, y)).loss);
  const after = await Promise.all(model.getWeights().map((w) => w.data() as Promise<Float32Array>));
  const deltas = after.map((w, i) => w.map((v, k) => v - initial[i][k]));

  const split = splitForGradCam(model, CAM_LAYER);
  const feats = tf.tidy(() => (split.dual.predict(x) as tf.Tensor[])[0] as tf.Tensor4D);
  const maps = gradCamMaps(split, feats, LABELS);
  const cams = (await maps.data()) as Float32Array;
  const names = model.weights.map((w) => w.originalName);
  tf.dispose([feats, maps, x, y]);
  opt.dispose();
  model.dispose();
  return { backend: sel.reason, names, losses, deltas, cams };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('webgpu backend (Dawn on Vulkan) against wasm', () => {
  let initial: Float32Array[];
  let xData: Float32Array;
  let wasm: Run;
  let gpuRun: Run | undefined;
  /** The webgpu run of the first test; the later tests fail (never skip) when it did not happen. */
  const gpu = (): Run => {
    expect(gpuRun, 'no webgpu run: see the first test').toBeDefined();
    return gpuRun!;
  };

  // The wasm reference in the hook; the webgpu run in a test, so that a missing adapter fails a test
  // (an error in beforeAll would only mark them skipped).
  beforeAll(async () => {
    installFastBatchNormGradient();
    await selectBackend('wasm');
    const init = buildModel(ARCH, { inputSize: SIZE, seed: 1 });
    initial = await Promise.all(init.getWeights().map((w) => w.data() as Promise<Float32Array>));
    init.dispose();
    xData = fixedBatch();
    wasm = await trainOn('wasm', initial, xData);
  }, 60_000);

  it('finds an adapter and trains there', async () => {
    gpuRun = await trainOn('webgpu', initial, xData);
    console.log(`webgpu: ${gpuRun.backend}`);
    expect(gpuRun.backend).toMatch(/WebGPU via Dawn/);
    expect(gpuRun.losses).toHaveLength(STEPS);
    for (const l of gpuRun.losses) expect(Number.isFinite(l)).toBe(true);
  }, 90_000);

  it(`gives the same losses over ${STEPS} SGD-Nesterov steps (relative ${REL_TOL})`, () => {
    const g = gpu();
    const rel = g.losses.map((l, i) => Math.abs(l - wasm.losses[i]) / Math.abs(wasm.losses[i]));
    console.log(`losses wasm ${wasm.losses.join(' ')} webgpu ${g.losses.join(' ')}; max relative difference ${Math.max(...rel).toExponential(2)}`);
    expect(wasm.losses[STEPS - 1]).not.toBe(wasm.losses[0]); // it did train
    for (const r of rel) expect(r).toBeLessThan(REL_TOL);
  });

  it(`gives the same weight updates, every weight tensor (relative ${REL_TOL} of its largest update)`, () => {
    const g = gpu();
    expect(g.deltas).toHaveLength(wasm.deltas.length);
    let worst = 0;
    wasm.deltas.forEach((d, i) => {
      const scale = maxAbs(d);
      const diff = maxAbsDiff(g.deltas[i], d);
      if (scale > 1e-5) worst = Math.max(worst, diff / scale);
      expect(diff, `${wasm.names[i]}: max |Δ| ${diff} vs largest update ${scale}`).toBeLessThanOrEqual(REL_TOL * scale + ABS_FLOOR);
    });
    console.log(`weight updates: max difference / largest update ${worst.toExponential(2)} over ${wasm.deltas.length} tensors (those with updates > 1e-5)`);
  });

  it('gives the same Grad-CAM maps after training (absolute 1e-3 on 0–1 maps)', () => {
    const diff = maxAbsDiff(gpu().cams, wasm.cams);
    console.log(`Grad-CAM: max |Δ| ${diff.toExponential(2)} over ${wasm.cams.length} values`);
    expect(maxAbs(wasm.cams)).toBeGreaterThan(0.5); // normalised maps, not all zero
    expect(diff).toBeLessThan(1e-3);
  });

  it('auto takes webgpu only on a hardware adapter (software Vulkan is slower than wasm)', async () => {
    const software = /llvmpipe|lavapipe|swiftshader/i.test(gpu().backend);
    const sel = await selectBackend('auto');
    expect(sel.name).toBe(software ? 'wasm' : 'webgpu');
    if (software) expect(sel.reason).toMatch(/webgpu: only a software adapter/);
  });
});

describe('webgpu device errors', () => {
  it('a command the device drops (a buffer over its binding limit) fails the read-back with the reason, not zeros', async () => {
    // In a child process: the first device error is remembered for the life of the backend. The script lives
    // under node_modules/.cache so that it resolves the project's packages.
    await mkdir(join(process.cwd(), 'node_modules', '.cache'), { recursive: true });
    const dir = await mkdtemp(join(process.cwd(), 'node_modules', '.cache', 'sax-webgpu-err-'));
    try {
      const backendUrl = pathToFileURL(join(process.cwd(), 'src/inference/backend.ts')).href;
      const script = join(dir, 'probe.mts');
      await writeFile(
        script,
        `import * as tf from '@tensorflow/tfjs';
import { selectBackend, assertBackendHealthy } from ${JSON.stringify(backendUrl)};
await selectBackend('webgpu');
const limit = (tf.backend() as any).device.limits.maxStorageBufferBindingSize as number;
const ok = tf.relu(tf.ones([1024]));
const okSum = (await tf.sum(ok).data())[0];
assertBackendHealthy(); // nothing wrong yet
const big = tf.relu(tf.ones([Math.floor(limit / 4) + 1024])); // one float32 buffer over the limit
const bigSum = (await tf.sum(big).data())[0];
let error = '';
try { assertBackendHealthy(); } catch (e) { error = (e as Error).name + ': ' + (e as Error).message; }
console.log(JSON.stringify({ limit, okSum, bigSum, error }));
process.exit(0);
`,
      );
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd(), timeout: 120_000, maxBuffer: 16 << 20 });
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { limit: number; okSum: number; bigSum: number; error: string };
      console.log(`device limit ${r.limit} B; dropped command read back ${r.bigSum}; ${r.error}`);
      expect(r.okSum).toBe(1024);
      expect(r.bigSum).not.toBe(Math.floor(r.limit / 4) + 1024); // the command was dropped: its result is garbage
      expect(r.error).toMatch(/^BackendRuntimeError: WebGPU device error: .*(binding size|larger than)/i);
      expect(r.error).toMatch(/lower batchSize or inputSize/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
