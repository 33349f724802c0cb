/**
 * Gradient kernels the tfjs WASM backend (4.22) lacks, registered in terms of kernels it has.
 *
 * Stock tfjs-backend-wasm cannot train a conv layer: `tf.variableGrads` through Conv2D fails with
 * "Kernel 'Conv2DBackpropFilter' not registered for backend 'wasm'", through DepthwiseConv2dNative with
 * 'DepthwiseConv2dNativeBackpropFilter' / 'DepthwiseConv2dNativeBackpropInput'. Checked per layer type
 * (conv2d, depthwise, separable, BN, ReLU/ReLU6, max/avg pool, GAP, zero padding, dropout, dense, add,
 * concatenate, multiply, upsampling, cropping): everything else has its gradient kernels on wasm
 * (Conv2DBackpropInput, MaxPoolGrad, AvgPoolGrad, EluGrad exist; FusedBatchNorm's gradient is composed of
 * elementwise ops). `gather`'s gradient (UnsortedSegmentSum) is also missing; no layer used here needs it.
 *
 * The kernels below call the wasm backend's own kernel functions (XNNPACK convolutions, transpose, pad,
 * reverse, sum) on TensorInfos and free every intermediate, so they run inside the engine like any kernel:
 *
 * - Conv2DBackpropFilter: dW = conv2d(xᵀ, dyᵀ) with xᵀ = x transposed to [Cin, H, W, N] (batch ↔ channels),
 *   dyᵀ = dy as a filter [Ho, Wo, N, Cout], dilation = the forward stride, padding = the forward padding;
 *   the [Cin, fh, fw, Cout] result is transposed to [fh, fw, Cin, Cout].
 * - DepthwiseConv2dNativeBackpropFilter: the same idea with a depthwise conv, batch folded into channels:
 *   x → [1, H, W, N·Cin], dy → filter [Ho, Wo, N·Cin, mult], dilation = stride, then summed over N.
 * - DepthwiseConv2dNativeBackpropInput: dx = depthwise conv of dy (zero-upsampled by the stride) with the
 *   spatially flipped filter as [fh, fw, Cin·mult, 1], then summed over the channel multiplier.
 * - Conv2DBackpropInput (replaces wasm's own scalar loop for NHWC): dx = conv2d of dy (zero-upsampled by
 *   the stride) with the flipped, in/out-swapped filter — on XNNPACK, 3–9× faster at stride 1 and ≈ 2×
 *   at stride 2 than the stock kernel (measured on 8×64²×32→64 3×3, 8×128²×3→32 7×7 and similar). Where that
 *   full correlation would mostly multiply padding (a stride-1 conv whose input map has ≥ 2× the output's
 *   positions), dx is built tap by tap instead (`conv2DBackpropInputPerTap`).
 *
 * NHWC only (NCHW Conv2DBackpropInput goes to the stock kernel) and dilation 1 (tfjs-core's conv
 * gradients reject other dilations anyway). All four match the cpu backend to ≤ 4e-7 relative.
 */

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs';

const BACKEND = 'wasm';

/** What the kernels need from the wasm backend object. */
interface WasmBackendLike {
  disposeData(dataId: object, force?: boolean): boolean;
}

type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;
type Shape4 = [number, number, number, number];

/** The kernels `registerWasmGradients` registers. */
export const WASM_GRADIENT_KERNELS = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
] as const;

/** Full-correlation waste (H·W / (Ho·Wo)) from which Conv2DBackpropInput goes tap by tap (measured: BENCHMARKS.md). */
const PER_TAP_MIN_WASTE = 2;

let registered = false;
let originalConv2DBackpropInput: KernelConfig | undefined;

function kernel(name: string): KernelFunc {
  if (name === 'Conv2DBackpropInput' && originalConv2DBackpropInput) return originalConv2DBackpropInput.kernelFunc;
  const k = tf.getKernel(name, BACKEND);
  if (!k) throw new Error(`wasm-gradients: kernel '${name}' is not registered for the wasm backend`);
  return k.kernelFunc;
}

/** Runs another wasm kernel on TensorInfos. */
function run(backend: WasmBackendLike, name: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
  const out = kernel(name)({ inputs, backend: backend as object, attrs });
  if (Array.isArray(out)) throw new Error(`wasm-gradients: kernel '${name}' returned several outputs`);
  return out;
}

/** A view with another shape on the same data (no copy, no extra reference: never dispose a view separately). */
function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

function free(backend: WasmBackendLike, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

function transpose(backend: WasmBackendLike, x: TensorInfo, perm: number[]): TensorInfo {
  return run(backend, 'Transpose', { x }, { perm });
}

function pair(v: number | number[] | undefined, dflt: number): [number, number] {
  if (v === undefined || v === null) return [dflt, dflt];
  if (typeof v === 'number') return [v, v];
  return [v[0], v.length > 1 ? v[1] : v[0]];
}

function checkNHWC(kernelName: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernelName} (wasm): only NHWC is supported, got dataFormat '${String(dataFormat)}'`);
  }
}

function checkNoDilation(kernelName: string, dilations: [number, number]): void {
  if (dilations[0] !== 1 || dilations[1] !== 1) {
    throw new Error(`${kernelName} (wasm): dilations > 1 are not supported (got ${dilations.join(',')})`);
  }
}

/**
 * Padding and crop for one spatial axis of a stride-1 "correlation" whose output must have `want` entries:
 * the data is padded by `before` (clamped at 0) and `after`, and the result starts at `start`
 * (> 0 only when `before` would be negative).
 */
function axisPlan(inLen: number, effFilter: number, before: number, want: number): { before: number; after: number; start: number } {
  const start = Math.max(0, -before);
  const b = Math.max(0, before);
  // stride-1 output length = inLen + b + after − effFilter + 1 must be ≥ start + want
  const after = Math.max(0, start + want + effFilter - 1 - inLen - b);
  return { before: b, after, start };
}

/** Crops a 4-D NHWC result to rows/cols [r0, r0+h) × [c0, c0+w) if needed (consumes `t`). */
function cropHW(backend: WasmBackendLike, t: TensorInfo, r0: number, h: number, c0: number, w: number): TensorInfo {
  if (r0 === 0 && c0 === 0 && t.shape[1] === h && t.shape[2] === w) return t;
  const out = run(backend, 'Slice', { x: t }, { begin: [0, r0, c0, 0], size: [t.shape[0], h, w, t.shape[3]] });
  free(backend, t);
  return out;
}

/** Inserts (s − 1) zeros after every row/column of an NHWC tensor: [N, H·sH, W·sW, C]. Returns `t` if s = 1. */
function zeroUpsample(backend: WasmBackendLike, t: TensorInfo, sH: number, sW: number): TensorInfo {
  if (sH === 1 && sW === 1) return t;
  const [n, h, w, c] = t.shape;
  const padded = run(backend, 'PadV2', { x: view(t, [n, h, 1, w, 1, c]) }, {
    paddings: [[0, 0], [0, 0], [0, sH - 1], [0, 0], [0, sW - 1], [0, 0]],
    constantValue: 0,
  });
  return view(padded, [n, h * sH, w * sW, c]);
}

// ---------------------------------------------------------------------------------------------------------

function conv2DBackpropFilter({ inputs, backend, attrs }: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const be = backend as WasmBackendLike;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = (attrs ?? {}) as unknown as { strides: number | [number, number]; pad: Pad; dataFormat?: string; dimRoundingMode?: Rounding; filterShape: Shape4 };
  checkNHWC('Conv2DBackpropFilter', a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
  const { filterHeight: fh, filterWidth: fw, strideHeight: sH, strideWidth: sW, inHeight: H, inWidth: W, outHeight: Ho, outWidth: Wo } = info;
  // out[ci, a, b, co] = Σ_{i,j,n} xᵀ[ci, a + i·sH − top, b + j·sW − left, n] · dyᵀ[i, j, n, co]
  const ph = axisPlan(H, (Ho - 1) * sH + 1, info.padInfo.top, fh);
  const pw = axisPlan(W, (Wo - 1) * sW + 1, info.padInfo.left, fw);
  const xT = transpose(be, x, [3, 1, 2, 0]); // [Cin, H, W, N]
  const dyT = transpose(be, dy, [1, 2, 0, 3]); // [Ho, Wo, N, Cout]
  const conv = run(be, 'Conv2D', { x: xT, filter: dyT }, {
    strides: [1, 1],
    dilations: [sH, sW],
    pad: [[0, 0], [ph.before, ph.after], [pw.before, pw.after], [0, 0]],
    dataFormat: 'NHWC',
  });
  free(be, xT, dyT);
  const cropped = cropHW(be, conv, ph.start, fh, pw.start, fw); // [Cin, fh, fw, Cout]
  const dW = transpose(be, cropped, [1, 2, 0, 3]);
  free(be, cropped);
  return dW;
}

function depthwiseConv2dNativeBackpropFilter({ inputs, backend, attrs }: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const be = backend as WasmBackendLike;
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = (attrs ?? {}) as unknown as { strides: number | [number, number]; dilations?: number | [number, number]; pad: Pad; dimRoundingMode?: Rounding; filterShape: Shape4 };
  checkNoDilation('DepthwiseConv2dNativeBackpropFilter', pair(a.dilations, 1));
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, a.filterShape, a.strides, 1, a.pad, a.dimRoundingMode, true);
  const { filterHeight: fh, filterWidth: fw, strideHeight: sH, strideWidth: sW, inHeight: H, inWidth: W, outHeight: Ho, outWidth: Wo } = info;
  const [n, , , cin] = x.shape;
  const mult = a.filterShape[3];
  const ph = axisPlan(H, (Ho - 1) * sH + 1, info.padInfo.top, fh);
  const pw = axisPlan(W, (Wo - 1) * sW + 1, info.padInfo.left, fw);
  // Batch folded into channels: channel n·Cin + ci; filter channel n·Cin + ci, multiplier q.
  const xT = transpose(be, x, [1, 2, 0, 3]); // [H, W, N, Cin]
  const dyT = transpose(be, dy, [1, 2, 0, 3]); // [Ho, Wo, N, Cin·mult]
  const conv = run(be, 'DepthwiseConv2dNative', { x: view(xT, [1, H, W, n * cin]), filter: view(dyT, [Ho, Wo, n * cin, mult]) }, {
    strides: [1, 1],
    dilations: [sH, sW],
    pad: [[0, 0], [ph.before, ph.after], [pw.before, pw.after], [0, 0]],
  });
  free(be, xT, dyT);
  const cropped = cropHW(be, conv, ph.start, fh, pw.start, fw); // [1, fh, fw, N·Cin·mult]
  if (n === 1) return view(cropped, [fh, fw, cin, mult]);
  const summed = run(be, 'Sum', { x: view(cropped, [fh * fw, n, cin * mult]) }, { axis: [1], keepDims: false });
  free(be, cropped);
  return view(summed, [fh, fw, cin, mult]);
}

function depthwiseConv2dNativeBackpropInput({ inputs, backend, attrs }: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const be = backend as WasmBackendLike;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = (attrs ?? {}) as unknown as { strides: number | [number, number]; dilations?: number | [number, number]; pad: Pad; dimRoundingMode?: Rounding; inputShape: Shape4 };
  checkNoDilation('DepthwiseConv2dNativeBackpropInput', pair(a.dilations, 1));
  const info = tf.backend_util.computeConv2DInfo(a.inputShape, filter.shape as Shape4, a.strides, 1, a.pad, a.dimRoundingMode, true);
  const { filterHeight: fh, filterWidth: fw, strideHeight: sH, strideWidth: sW, inHeight: H, inWidth: W } = info;
  const [n, , , cin] = a.inputShape;
  const mult = filter.shape[3];
  const dyz = zeroUpsample(be, dy, sH, sW); // [N, Ho·sH, Wo·sW, Cin·mult]
  // dx[y] = Σ_a dyz[y + top − a] · f[a] = Σ_a' dyz[y − (fh − 1 − top) + a'] · f[fh − 1 − a']
  const ph = axisPlan(dyz.shape[1], fh, fh - 1 - info.padInfo.top, H);
  const pw = axisPlan(dyz.shape[2], fw, fw - 1 - info.padInfo.left, W);
  const flipped = run(be, 'Reverse', { x: filter }, { dims: [0, 1] }); // [fh, fw, Cin, mult]
  const conv = run(be, 'DepthwiseConv2dNative', { x: dyz, filter: view(flipped, [fh, fw, cin * mult, 1]) }, {
    strides: [1, 1],
    dilations: [1, 1],
    pad: [[0, 0], [ph.before, ph.after], [pw.before, pw.after], [0, 0]],
  });
  free(be, flipped);
  if (dyz !== dy) free(be, dyz);
  const cropped = cropHW(be, conv, ph.start, H, pw.start, W); // [N, H, W, Cin·mult]
  if (mult === 1) return cropped;
  const summed = run(be, 'Sum', { x: view(cropped, [n, H, W, cin, mult]) }, { axis: [4], keepDims: false });
  free(be, cropped);
  return summed;
}

/**
 * dx of a stride-1 conv tap by tap: for each filter tap (a, b), dy·W[a, b]ᵀ (a 1×1 convolution, [N, Ho, Wo, Cin])
 * is added into dx at the tap's offset. Exact FLOPs (those of the forward conv), where the full correlation below
 * computes every dx position against every tap — mostly padding when the output map is small against the
 * filter (CBR-Small's 7×7 convs on 10² inputs: 6× the work) — but one full-size add per tap, so it only pays
 * when the waste is large. (A single [N·Ho·Wo, fh·fw·Cin] product was slower: wasm's strided Slice of its
 * per-tap columns costs more than the product; wasm's BatchMatMul is a plain loop, the 1×1 conv XNNPACK's GEMM.)
 */
function conv2DBackpropInputPerTap(be: WasmBackendLike, dy: TensorInfo, filter: TensorInfo, info: tf.backend_util.Conv2DInfo): TensorInfo {
  const { filterHeight: fh, filterWidth: fw, inHeight: H, inWidth: W, outHeight: Ho, outWidth: Wo, inChannels: cin, outChannels: cout, batchSize: n } = info;
  const wT = transpose(be, filter, [0, 1, 3, 2]); // [fh, fw, Cout, Cin]
  let dx: TensorInfo | undefined;
  for (let a = 0; a < fh; a++) {
    const r = a - info.padInfo.top; // the dx row that dy row 0 reaches through this tap
    const p0 = Math.max(0, -r);
    const p1 = Math.min(Ho, H - r);
    if (p1 <= p0) continue;
    for (let b = 0; b < fw; b++) {
      const c = b - info.padInfo.left;
      const q0 = Math.max(0, -c);
      const q1 = Math.min(Wo, W - c);
      if (q1 <= q0) continue;
      const w = run(be, 'Slice', { x: wT }, { begin: [a, b, 0, 0], size: [1, 1, cout, cin] });
      const slab = run(be, 'Conv2D', { x: dy, filter: w }, { strides: [1, 1], dilations: [1, 1], pad: 'valid', dataFormat: 'NHWC' });
      free(be, w);
      const part = cropHW(be, slab, p0, p1 - p0, q0, q1 - q0);
      const placed = run(be, 'PadV2', { x: part }, {
        paddings: [[0, 0], [r + p0, H - (r + p1)], [c + q0, W - (c + q1)], [0, 0]],
        constantValue: 0,
      });
      free(be, part);
      if (!dx) dx = placed;
      else {
        const sum = run(be, 'Add', { a: dx, b: placed });
        free(be, dx, placed);
        dx = sum;
      }
    }
  }
  free(be, wT);
  return dx ?? run(be, 'Fill', {}, { shape: [n, H, W, cin], value: 0, dtype: 'float32' });
}

function conv2DBackpropInput({ inputs, backend, attrs }: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const be = backend as WasmBackendLike;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = (attrs ?? {}) as unknown as { strides: number | [number, number]; pad: Pad; dataFormat?: string; dimRoundingMode?: Rounding; inputShape: Shape4 };
  if ((a.dataFormat === 'NCHW' || a.dataFormat === 'channelsFirst') && originalConv2DBackpropInput) {
    return run(be, 'Conv2DBackpropInput', inputs, attrs); // wasm's own kernel handles NCHW
  }
  checkNHWC('Conv2DBackpropInput', a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(a.inputShape, filter.shape as Shape4, a.strides, 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
  const { filterHeight: fh, filterWidth: fw, strideHeight: sH, strideWidth: sW, inHeight: H, inWidth: W } = info;
  // The full correlation costs H·W/(Ho·Wo) times the forward FLOPs; tap by tap pays where that is large.
  if (sH === 1 && sW === 1 && H * W >= PER_TAP_MIN_WASTE * info.outHeight * info.outWidth) return conv2DBackpropInputPerTap(be, dy, filter, info);
  const dyz = zeroUpsample(be, dy, sH, sW); // [N, Ho·sH, Wo·sW, Cout]
  const ph = axisPlan(dyz.shape[1], fh, fh - 1 - info.padInfo.top, H);
  const pw = axisPlan(dyz.shape[2], fw, fw - 1 - info.padInfo.left, W);
  const flipped = run(be, 'Reverse', { x: filter }, { dims: [0, 1] }); // [fh, fw, Cin, Cout]
  const g = transpose(be, flipped, [0, 1, 3, 2]); // [fh, fw, Cout, Cin]
  free(be, flipped);
  const conv = run(be, 'Conv2D', { x: dyz, filter: g }, {
    strides: [1, 1],
    dilations: [1, 1],
    pad: [[0, 0], [ph.before, ph.after], [pw.before, pw.after], [0, 0]],
    dataFormat: 'NHWC',
  });
  free(be, g);
  if (dyz !== dy) free(be, dyz);
  return cropHW(be, conv, ph.start, H, pw.start, W);
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Registers the gradient kernels for the 'wasm' backend (idempotent; safe before or after the backend is
 * initialised). Missing kernels are added; Conv2DBackpropInput is replaced by the XNNPACK-based version
 * (the original kernel's setup function is kept so that its cwrap still happens at backend start).
 * Returns the names of the kernels it registered on this call.
 */
export function registerWasmGradients(): string[] {
  if (registered) return [];
  registered = true;
  const done: string[] = [];
  const add = (kernelName: string, kernelFunc: KernelConfig['kernelFunc'], setupFunc?: KernelConfig['setupFunc']): void => {
    const cfg: KernelConfig = { kernelName, backendName: BACKEND, kernelFunc };
    if (setupFunc) cfg.setupFunc = setupFunc;
    tf.registerKernel(cfg);
    done.push(kernelName);
  };
  const addIfMissing = (kernelName: string, kernelFunc: KernelConfig['kernelFunc']): void => {
    if (!tf.getKernel(kernelName, BACKEND)) add(kernelName, kernelFunc);
  };
  addIfMissing('Conv2DBackpropFilter', conv2DBackpropFilter as KernelFunc);
  addIfMissing('DepthwiseConv2dNativeBackpropFilter', depthwiseConv2dNativeBackpropFilter as KernelFunc);
  addIfMissing('DepthwiseConv2dNativeBackpropInput', depthwiseConv2dNativeBackpropInput as KernelFunc);
  const original = tf.getKernel('Conv2DBackpropInput', BACKEND);
  if (original) {
    originalConv2DBackpropInput = original;
    tf.unregisterKernel('Conv2DBackpropInput', BACKEND);
    add('Conv2DBackpropInput', conv2DBackpropInput as KernelFunc, original.setupFunc);
  } else {
    add('Conv2DBackpropInput', conv2DBackpropInput as KernelFunc);
  }
  return done;
}

/** Whether `registerWasmGradients` has run in this process. */
export function wasmGradientsRegistered(): boolean {
  return registered;
}

/** Internal kernel functions, exported for tests and benchmarks. */
export const wasmGradientKernelFuncs = {
  conv2DBackpropFilter: conv2DBackpropFilter as KernelFunc,
  conv2DBackpropInput: conv2DBackpropInput as KernelFunc,
  depthwiseConv2dNativeBackpropFilter: depthwiseConv2dNativeBackpropFilter as KernelFunc,
  depthwiseConv2dNativeBackpropInput: depthwiseConv2dNativeBackpropInput as KernelFunc,
};
