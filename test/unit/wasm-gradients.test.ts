import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { WASM_GRADIENT_KERNELS, registerWasmGradients, wasmGradientsRegistered } from '../../src/training/wasm-gradients.js';

type Attrs = Record<string, unknown>;
type Shape4 = [number, number, number, number];

/** Stock wasm kernels, recorded before registering ours. */
const stockHad: Record<string, boolean> = {};
for (const k of WASM_GRADIENT_KERNELS) stockHad[k] = tf.getKernel(k, 'wasm') !== undefined;

let registeredNow: string[] = [];
const wasWasRegistered = wasmGradientsRegistered();

beforeAll(async () => {
  registeredNow = registerWasmGradients();
  expect(await tf.setBackend('wasm')).toBe(true);
});

/** Runs `fn` on cpu and on wasm; returns the max |Δ| relative to max(1, max |cpu|). */
async function compare(fn: () => tf.Tensor): Promise<{ rel: number; abs: number }> {
  await tf.setBackend('cpu');
  const ref = fn();
  const c = await ref.data();
  await tf.setBackend('wasm');
  const out = fn();
  const w = await out.data();
  expect(out.shape).toEqual(ref.shape);
  ref.dispose();
  out.dispose();
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < c.length; i++) {
    abs = Math.max(abs, Math.abs(c[i] - w[i]));
    scale = Math.max(scale, Math.abs(c[i]));
  }
  return { rel: abs / Math.max(1, scale), abs };
}

function runKernel(name: string, inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor {
  return tf.engine().runKernel(name, inputs, attrs as never) as tf.Tensor;
}

interface Case {
  x: Shape4;
  f: [number, number];
  s: [number, number];
  pad: 'same' | 'valid';
}

const CASES: Case[] = [];
for (const x of [
  [2, 7, 7, 3],
  [1, 8, 6, 2],
  [3, 5, 9, 4],
] as Shape4[]) {
  for (const f of [
    [1, 1],
    [2, 2],
    [3, 3],
    [5, 3],
  ] as [number, number][]) {
    for (const s of [
      [1, 1],
      [2, 2],
      [1, 2],
    ] as [number, number][]) {
      for (const pad of ['same', 'valid'] as const) {
        if (pad === 'valid' && (f[0] > x[1] || f[1] > x[2])) continue;
        CASES.push({ x, f, s, pad });
      }
    }
  }
}

const TOL = 1e-4;

describe('wasm gradient kernels', () => {
  // With IS_TEST the engine throws if a kernel leaves backend data behind. (Only here: tfjs' own
  // custom-gradient ops, used by the model tests below, trip this check falsely.)
  beforeAll(() => {
    tf.env().set('IS_TEST', true);
  });
  afterAll(() => {
    tf.env().set('IS_TEST', false);
  });

  it('registers the kernels stock tfjs-backend-wasm lacks (once)', () => {
    if (!wasWasRegistered) {
      // Missing in tfjs-backend-wasm 4.22: the conv filter gradient and both depthwise gradients.
      expect(stockHad).toEqual({
        Conv2DBackpropFilter: false,
        Conv2DBackpropInput: true,
        DepthwiseConv2dNativeBackpropFilter: false,
        DepthwiseConv2dNativeBackpropInput: false,
      });
      expect([...registeredNow].sort()).toEqual([...WASM_GRADIENT_KERNELS].sort());
    }
    for (const k of WASM_GRADIENT_KERNELS) expect(tf.getKernel(k, 'wasm')).toBeDefined();
    expect(registerWasmGradients()).toEqual([]);
    expect(wasmGradientsRegistered()).toBe(true);
  });

  it(`match the cpu backend on ${CASES.length} shapes × strides × paddings`, async () => {
    let worst = 0;
    let n = 0;
    for (const c of CASES) {
      const [N, , , cin] = c.x;
      const cout = 3;
      const mult = 2;
      const x = tf.randomUniform(c.x, -1, 1, 'float32', 1 + n);
      const w = tf.randomUniform([c.f[0], c.f[1], cin, cout], -1, 1, 'float32', 2 + n);
      const dw = tf.randomUniform([c.f[0], c.f[1], cin, mult], -1, 1, 'float32', 3 + n);
      const info = tf.backend_util.computeConv2DInfo(c.x, [c.f[0], c.f[1], cin, cout], c.s, 1, c.pad);
      const dy = tf.randomUniform([N, info.outHeight, info.outWidth, cout], -1, 1, 'float32', 4 + n);
      const ddy = tf.randomUniform([N, info.outHeight, info.outWidth, cin * mult], -1, 1, 'float32', 5 + n);
      const conv = { strides: c.s, pad: c.pad, dataFormat: 'NHWC' };
      const depth = { strides: c.s, pad: c.pad, dilations: [1, 1] };
      const results = {
        Conv2DBackpropFilter: await compare(() => runKernel('Conv2DBackpropFilter', { x, dy }, { ...conv, filterShape: w.shape })),
        Conv2DBackpropInput: await compare(() => runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...conv, inputShape: c.x })),
        DepthwiseConv2dNativeBackpropFilter: await compare(() =>
          runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: ddy }, { ...depth, filterShape: dw.shape }),
        ),
        DepthwiseConv2dNativeBackpropInput: await compare(() =>
          runKernel('DepthwiseConv2dNativeBackpropInput', { dy: ddy, filter: dw }, { ...depth, inputShape: c.x }),
        ),
      };
      for (const [k, r] of Object.entries(results)) {
        expect(r.rel, `${k} ${JSON.stringify(c)}`).toBeLessThan(TOL);
        worst = Math.max(worst, r.rel);
      }
      tf.dispose([x, w, dw, dy, ddy]);
      n++;
    }
    expect(n).toBeGreaterThan(50);
    expect(worst).toBeLessThan(TOL);
  });

  it('free every intermediate (no backend data left behind)', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([2, 6, 6, 3]);
    const w = tf.randomNormal([3, 3, 3, 4]);
    const dw = tf.randomNormal([3, 3, 3, 2]);
    const backend = tf.backend();
    const before = backend.numDataIds();
    for (const s of [1, 2]) {
      const dy = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, 'same');
      const ddy = tf.depthwiseConv2d(x as tf.Tensor4D, dw as tf.Tensor4D, s, 'same');
      const outs = [
        runKernel('Conv2DBackpropFilter', { x, dy }, { strides: s, pad: 'same', dataFormat: 'NHWC', filterShape: w.shape }),
        runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides: s, pad: 'same', dataFormat: 'NHWC', inputShape: x.shape }),
        runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: ddy }, { strides: s, pad: 'same', dilations: 1, filterShape: dw.shape }),
        runKernel('DepthwiseConv2dNativeBackpropInput', { dy: ddy, filter: dw }, { strides: s, pad: 'same', dilations: 1, inputShape: x.shape }),
      ];
      await Promise.all(outs.map((o) => o.data()));
      tf.dispose([dy, ddy, ...outs]);
    }
    // A 'valid' 3×3 conv on 6² (36 input vs 16 output positions): Conv2DBackpropInput goes tap by tap.
    const dyValid = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid');
    const dxValid = runKernel('Conv2DBackpropInput', { dy: dyValid, filter: w }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', inputShape: x.shape });
    await dxValid.data();
    tf.dispose([dyValid, dxValid]);
    expect(backend.numDataIds()).toBe(before);
    tf.dispose([x, w, dw]);
  });

  it('Conv2DBackpropInput keeps NCHW working (stock kernel)', async () => {
    const dy = tf.randomUniform([2, 4, 3, 3], -1, 1, 'float32', 21); // NCHW: C=4, 3×3 output
    const w = tf.randomUniform([3, 3, 2, 4], -1, 1, 'float32', 22);
    const r = await compare(() => runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides: 2, pad: 'same', dataFormat: 'NCHW', inputShape: [2, 2, 6, 5] }));
    expect(r.rel).toBeLessThan(TOL);
    tf.dispose([dy, w]);
  });

  it('reject dilated depthwise gradients clearly', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([1, 7, 7, 2]);
    const dy = tf.randomNormal([1, 3, 3, 2]);
    expect(() =>
      runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dilations: 2, filterShape: [3, 3, 2, 1] }),
    ).toThrow(/dilations/);
    tf.dispose([x, dy]);
  });
});

describe('full model gradients on wasm equal cpu', () => {
  async function gradsOn(backend: 'cpu' | 'wasm', model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): Promise<Map<string, Float32Array>> {
    await tf.setBackend(backend);
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
    const out = new Map<string, Float32Array>();
    out.set('loss', (await value.data()) as Float32Array);
    for (const [name, g] of Object.entries(grads)) out.set(name, (await g.data()) as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  }

  async function check(model: tf.LayersModel, inputShape: number[]): Promise<number> {
    const x = tf.randomUniform([4, ...inputShape], -1, 1, 'float32', 7);
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
    const cpu = await gradsOn('cpu', model, x, y);
    const wasm = await gradsOn('wasm', model, x, y);
    expect([...wasm.keys()].sort()).toEqual([...cpu.keys()].sort());
    expect(cpu.size).toBeGreaterThan(8);
    let worst = 0;
    for (const [name, ref] of cpu) {
      const got = wasm.get(name)!;
      let abs = 0;
      let scale = 0;
      for (let i = 0; i < ref.length; i++) {
        abs = Math.max(abs, Math.abs(ref[i] - got[i]));
        scale = Math.max(scale, Math.abs(ref[i]));
      }
      const rel = abs / Math.max(scale, 1e-3);
      expect(rel, name).toBeLessThan(TOL);
      worst = Math.max(worst, rel);
    }
    tf.dispose([x, y]);
    return worst;
  }

  const seed = (s: number) => tf.initializers.glorotUniform({ seed: s });

  it('conv → BN → relu → maxpool → conv(stride 2) → BN → relu → GAP → dense', async () => {
    await tf.setBackend('cpu');
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [12, 12, 3], filters: 6, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: seed(1) }),
        tf.layers.batchNormalization(),
        tf.layers.reLU(),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', kernelInitializer: seed(2) }),
        tf.layers.batchNormalization(),
        tf.layers.reLU(),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: seed(3) }),
      ],
    });
    expect(await check(model, [12, 12, 3])).toBeLessThan(TOL);
    model.dispose();
  });

  it('MobileNet-style depthwise/separable blocks (stride 1 and 2)', async () => {
    await tf.setBackend('cpu');
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [10, 10, 3], filters: 4, kernelSize: 3, strides: 2, padding: 'same', kernelInitializer: seed(4) }),
        tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, depthwiseInitializer: seed(5) }),
        tf.layers.batchNormalization(),
        tf.layers.reLU({ maxValue: 6 }),
        tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthwiseInitializer: seed(6) }),
        tf.layers.separableConv2d({ filters: 5, kernelSize: 3, padding: 'valid', depthwiseInitializer: seed(7), pointwiseInitializer: seed(8) }),
        tf.layers.globalAveragePooling2d({}),
        tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: seed(9) }),
      ],
    });
    expect(await check(model, [10, 10, 3])).toBeLessThan(TOL);
    model.dispose();
  });

  it('trainOnBatch runs on wasm', async () => {
    await tf.setBackend('wasm');
    const model = tf.sequential({
      layers: [
        tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, kernelInitializer: seed(10) }),
        tf.layers.maxPooling2d({ poolSize: 2 }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: seed(11) }),
      ],
    });
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    const x = tf.randomNormal([4, 8, 8, 1], 0, 1, 'float32', 3);
    const y = tf.oneHot(tf.tensor1d([0, 1, 0, 1], 'int32'), 2);
    const first = (await model.trainOnBatch(x, y)) as number;
    let last = first;
    for (let i = 0; i < 20; i++) last = (await model.trainOnBatch(x, y)) as number;
    expect(last).toBeLessThan(first);
    tf.dispose([x, y]);
    model.dispose();
  });
});
