/**
 * tfjs backend selection (`--backend auto|webgpu|tensorflow|wasm|cpu`).
 *
 * - tensorflow: @tensorflow/tfjs-node-gpu, else @tensorflow/tfjs-node (libtensorflow). Optional packages:
 *   they download libtensorflow at install time, so they are usually absent (see DESIGN.md).
 * - webgpu: @tensorflow/tfjs-backend-webgpu on the `webgpu` npm package (Dawn over Vulkan); needs an adapter.
 *   Optional packages, imported only when asked for.
 * - wasm: @tensorflow/tfjs-backend-wasm (XNNPACK + SIMD, single-threaded in Node). The .wasm binaries are
 *   read from the package's own dist/ folder (set explicitly with `setWasmPaths`, so that bundling or a
 *   changed working directory does not break loading). The training gradient kernels the stock backend
 *   lacks are registered (src/training/wasm-gradients.ts).
 * - cpu: pure JS; correct everywhere, ≈ 0.25 GMAC/s: never the automatic choice for CNNs unless all else fails.
 *
 * auto: tensorflow if installed and loadable, else webgpu if installed and a hardware adapter exists, else
 * wasm (else cpu, with a warning). A software adapter (Mesa's llvmpipe/lavapipe, SwiftShader: Vulkan on
 * the CPU) is used only when asked for by name: it is far slower than wasm (CBR-Small-128 1.8 s vs 35 ms
 * per image), and CI installs one for the WebGPU test.
 */

import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from '../log.js';

export type BackendPreference = 'auto' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendName = Exclude<BackendPreference, 'auto'>;

export const BACKEND_PREFERENCES: readonly BackendPreference[] = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

export interface BackendSelection {
  /** The active tfjs backend (`tf.getBackend()`). */
  name: BackendName;
  /** Why it was chosen, in words (includes why faster ones were skipped under auto). */
  reason: string;
}

/** Thrown when a backend was requested explicitly and cannot be used. */
export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: BackendName,
    message: string,
  ) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

/**
 * The GPU device reported an error (WebGPU: an uncaptured validation or out-of-memory error, or a lost
 * device). WebGPU does not throw at the failing call: the command is dropped and reads return zeros, so a run
 * that went on would train or classify on garbage. `assertBackendHealthy` turns the first such error into
 * this exception at the next read-back.
 */
export class BackendRuntimeError extends Error {
  constructor(
    readonly backend: BackendName,
    message: string,
  ) {
    super(message);
    this.name = 'BackendRuntimeError';
  }
}

let deviceError: string | undefined;

/** Hint for the errors a user can act on. */
function deviceErrorHint(msg: string): string {
  if (/binding size|maxStorageBufferBindingSize|maxBufferSize|out of memory|OutOfMemory/i.test(msg)) {
    return ' (a tensor is larger than this GPU device allows per buffer: lower batchSize or inputSize, or use --backend wasm)';
  }
  return '';
}

/** Records the first error the active WebGPU device reports (see BackendRuntimeError). */
function watchWebgpuDevice(): void {
  const dev = (tf.backend() as unknown as { device?: any }).device;
  if (!dev) return;
  dev.onuncapturederror = (ev: any) => {
    if (deviceError !== undefined) return;
    const msg = String(ev?.error?.message ?? message(ev)).trim();
    const first = msg.split('\n')[0];
    deviceError = `WebGPU device error: ${first}${deviceErrorHint(msg)}`;
  };
  dev.lost?.then?.((info: any) => {
    deviceError ??= `WebGPU device lost${info?.message ? `: ${String(info.message)}` : ''}`;
  });
}

/**
 * Throws BackendRuntimeError when the active backend's device has reported an error since it was selected
 * (webgpu only; a no-op for the others). `readBack` calls it after every read, so a run stops at the first
 * bad step instead of producing numbers from dropped GPU commands.
 */
export function assertBackendHealthy(): void {
  if (deviceError !== undefined) throw new BackendRuntimeError('webgpu', deviceError);
}

/**
 * Reads a numeric tensor back (`data()`: asynchronous, which the webgpu backend needs in Node) and then checks
 * the device (`assertBackendHealthy`): every read-back of training and inference goes through here.
 */
export async function readBack(t: tf.Tensor): Promise<Float32Array | Int32Array | Uint8Array> {
  const d = (await t.data()) as Float32Array | Int32Array | Uint8Array;
  assertBackendHealthy();
  return d;
}

/** An adapter's vendor, architecture, device and description, as one line (empty parts left out). */
export function adapterDescription(adapter: { info?: Record<string, unknown> } | null | undefined): string {
  const info = adapter?.info ?? {};
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
}

type MinimalLogger = Pick<Logger, 'info' | 'warn' | 'debug'>;

const requireHere = createRequire(import.meta.url);

/** True if `spec` is resolvable from here (installed), without loading it. */
function isInstalled(spec: string): boolean {
  try {
    requireHere.resolve(spec);
    return true;
  } catch {
    return false;
  }
}

/** Dynamic import through a variable, so that TypeScript and bundlers do not require optional packages. */
async function importOptional(spec: string): Promise<any> {
  return import(spec);
}

function message(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}

async function activate(name: BackendName): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new BackendUnavailableError(name, `tf.setBackend('${name}') failed: ${message(err)}`);
  }
  if (!ok) throw new BackendUnavailableError(name, `tf.setBackend('${name}') returned false (backend failed to initialise)`);
  await tf.ready();
}

// ---------------------------------------------------------------------------------------------------------

async function useTensorflow(): Promise<string> {
  const candidates = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
  const present = candidates.filter(isInstalled);
  if (present.length === 0) {
    throw new BackendUnavailableError(
      'tensorflow',
      'backend "tensorflow" needs @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu, and neither is installed ' +
        '(their install downloads libtensorflow: on an offline host serve it from an internal mirror and set ' +
        'TFJS_NODE_CDN_STORAGE, see DESIGN.md). Use --backend wasm or auto instead.',
    );
  }
  const errors: string[] = [];
  for (const spec of present) {
    try {
      await importOptional(spec);
      if (!tf.findBackend('tensorflow')) throw new Error(`${spec} loaded but registered no 'tensorflow' backend (tfjs version mismatch?)`);
      await activate('tensorflow');
      return `${spec} (libtensorflow)`;
    } catch (err) {
      errors.push(`${spec}: ${message(err)}`);
    }
  }
  throw new BackendUnavailableError('tensorflow', `backend "tensorflow" is installed but failed to load: ${errors.join('; ')}`);
}

/** True for a WebGPU adapter that runs on the CPU (Mesa llvmpipe/lavapipe, SwiftShader, Dawn's fallback). */
function isSoftwareAdapter(adapter: any): boolean {
  return adapter?.isFallbackAdapter === true || adapter?.info?.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(adapterDescription(adapter));
}

async function useWebgpu(auto = false): Promise<string> {
  const missing = ['webgpu', '@tensorflow/tfjs-backend-webgpu'].filter((s) => !isInstalled(s));
  if (missing.length > 0) {
    throw new BackendUnavailableError(
      'webgpu',
      `backend "webgpu" needs the npm packages ${missing.join(' and ')} (not installed; ` +
        '`npm install webgpu @tensorflow/tfjs-backend-webgpu@4.22.0`, plus a Vulkan driver Dawn accepts).',
    );
  }
  const g = globalThis as any;
  if (!g.navigator?.gpu) {
    const dawn = await importOptional('webgpu');
    const create = dawn.create ?? dawn.default?.create;
    const globals = dawn.globals ?? dawn.default?.globals;
    if (typeof create !== 'function') throw new BackendUnavailableError('webgpu', 'the webgpu package exports no create()');
    if (globals) Object.assign(g, globals);
    const gpu = create([]);
    if (g.navigator) {
      Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    } else {
      Object.defineProperty(g, 'navigator', { value: { gpu }, configurable: true, writable: true });
    }
  }
  let adapter: any;
  try {
    adapter = await g.navigator.gpu.requestAdapter();
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `WebGPU requestAdapter() failed: ${message(err)}`);
  }
  if (!adapter) {
    throw new BackendUnavailableError(
      'webgpu',
      'no WebGPU adapter (Dawn found no usable Vulkan device; Debian 12 Mesa 22 lavapipe is refused, Mesa ≥ 25 or a GPU driver works)',
    );
  }
  const desc = adapterDescription(adapter);
  if (auto && isSoftwareAdapter(adapter)) {
    throw new BackendUnavailableError('webgpu', `only a software adapter (${desc}): slower than wasm; --backend webgpu uses it anyway`);
  }
  await importOptional('@tensorflow/tfjs-backend-webgpu');
  await activate('webgpu');
  watchWebgpuDevice();
  return `WebGPU via Dawn${desc ? ` (${desc})` : ''}`;
}

/** Folder holding the tfjs-backend-wasm .wasm binaries (the package's dist/), with a trailing separator. */
export function wasmBinaryDir(): string {
  const main = requireHere.resolve('@tensorflow/tfjs-backend-wasm'); // …/dist/tf-backend-wasm.node.js
  return dirname(main) + sep;
}

async function useWasm(): Promise<string> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (err) {
    throw new BackendUnavailableError('wasm', `@tensorflow/tfjs-backend-wasm failed to load: ${message(err)}`);
  }
  const dir = wasmBinaryDir();
  try {
    // A plain file path: in Node the Emscripten loader reads it with fs (no fetch). Must precede init.
    wasm.setWasmPaths(dir);
  } catch {
    // already initialised (setWasmPaths refuses after a failed init): keep the paths it has
  }
  const { registerWasmGradients } = await import('../training/wasm-gradients.js');
  registerWasmGradients();
  await activate('wasm');
  return `WASM (XNNPACK, SIMD ${String(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))}, binaries from ${join(dir, '.')}; training gradient kernels registered)`;
}

async function useCpu(): Promise<string> {
  await activate('cpu');
  return 'pure-JS cpu backend (slow: ≈ 0.25 GMAC/s)';
}

/** Each backend's activation; `auto` is true under `--backend auto` (webgpu then refuses software adapters). */
const USE: Record<BackendName, (auto: boolean) => Promise<string>> = {
  tensorflow: useTensorflow,
  webgpu: useWebgpu,
  wasm: useWasm,
  cpu: useCpu,
};

/**
 * Resolves and activates the tfjs backend. An explicit preference that cannot be used throws
 * `BackendUnavailableError` with the reason; `auto` tries tensorflow → webgpu → wasm → cpu, skipping
 * packages that are not installed, and logs the choice and the reasons for skipping the others.
 */
export async function selectBackend(pref: BackendPreference = 'auto', logger?: MinimalLogger): Promise<BackendSelection> {
  if (!BACKEND_PREFERENCES.includes(pref)) {
    throw new RangeError(`unknown backend '${String(pref)}' (expected one of ${BACKEND_PREFERENCES.join(', ')})`);
  }
  if (pref !== 'auto') {
    const detail = await USE[pref](false);
    const sel: BackendSelection = { name: pref, reason: `requested: ${detail}` };
    logger?.info({ backend: sel.name, reason: sel.reason }, 'tfjs backend selected');
    return sel;
  }
  const skipped: string[] = [];
  const packages: Partial<Record<BackendName, string[]>> = {
    tensorflow: ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'],
    webgpu: ['@tensorflow/tfjs-backend-webgpu'],
  };
  for (const name of ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const) {
    const pkgs = packages[name];
    if (pkgs && !pkgs.some(isInstalled)) {
      skipped.push(`${name}: not installed`);
      continue;
    }
    try {
      const detail = await USE[name](true);
      const reason = `auto: ${detail}${skipped.length ? ` (skipped ${skipped.join('; ')})` : ''}`;
      const sel: BackendSelection = { name, reason };
      if (name === 'cpu') logger?.warn({ backend: name, reason }, 'tfjs backend selected: falling back to the slow cpu backend');
      else logger?.info({ backend: name, reason }, 'tfjs backend selected');
      return sel;
    } catch (err) {
      skipped.push(`${name}: ${message(err)}`);
      logger?.debug({ backend: name, err: message(err) }, 'tfjs backend unavailable');
    }
  }
  throw new Error(`no tfjs backend could be initialised: ${skipped.join('; ')}`);
}
