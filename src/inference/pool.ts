/**
 * A pool of worker threads, each with its own tfjs backend and copy of the classifier, so that one stack
 * uses every core: tfjs-wasm is single-threaded in Node by design (notes/ml-backends.md §2), so more cores
 * need more tfjs instances.
 *
 * Each call splits the stack into one contiguous chunk per worker. Workers preprocess their own chunk (for
 * 2.5D models with one neighbour slice on each side as context, so that the network inputs are exactly
 * those of a single-threaded run) and return probabilities and, on request, the Grad-CAMs (transferred,
 * not copied). The pool implements `StackClassifier`, so `classifyStack` takes it in place of a
 * SliceClassifier.
 *
 * This file is also the worker's entry point (`new Worker(import.meta.url)`): under `node --import tsx`
 * the worker inherits the loader through `execArgv`; in the built package it runs the compiled .js.
 */
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { BackendPreference } from './backend.js';
import { batchRanges, SliceClassifier, type CamClassification, type CamOptions, type ClassifierCard } from './classifier.js';
import type { StackClassifier } from './classify-stack.js';
import type { CamScoreKind } from './gradcam.js';
import { serializeModel } from './model-dir.js';
import type { ModelRef } from './result.js';

/** Where the workers get the model: a model directory, or an in-memory model and its card. */
export type PoolModelSource = { modelDir: string } | { model: tf.LayersModel; card: ClassifierCard };

export interface ClassifierPoolOptions {
  /**
   * Worker threads (each one tfjs backend).
   * @defaultValue os.availableParallelism()
   */
  threads?: number;
  /**
   * Backend of every worker.
   * @defaultValue 'wasm'
   */
  backend?: BackendPreference;
  /**
   * Images per forward pass inside a worker.
   * @defaultValue 8
   */
  batchSize?: number;
}

interface SerializedSource {
  modelDir?: string;
  modelJson?: Record<string, unknown>;
  weights?: Uint8Array;
  card?: ClassifierCard;
}

type ToWorker =
  | { type: 'init'; source: SerializedSource; backend: BackendPreference; batchSize: number }
  | { type: 'run'; id: number; images: Float32Array[]; rows: number; columns: number; from: number; to: number; cams: boolean };

type FromWorker =
  | { type: 'ready'; card: ClassifierCard; camScore: CamScoreKind; camLayer: string; backend: string }
  | { type: 'result'; id: number; probabilities: number[][]; cams?: Float32Array[]; camClasses?: number[] }
  | { type: 'error'; id?: number; message: string };

const WORKER_FLAG = 'saxRangeClassifierPoolWorker';

/**
 * Starts this module as a worker. Running from TypeScript sources (tsx, during development and benchmarks),
 * the worker registers tsx's ESM loader itself first: Node 20 does not apply the parent's `--import` hooks
 * to worker threads.
 */
function spawnWorker(): Worker {
  const url = new URL(import.meta.url);
  const workerData = { [WORKER_FLAG]: true };
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData });
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

interface Pending {
  resolve: (r: Extract<FromWorker, { type: 'result' }>) => void;
  reject: (e: Error) => void;
}

class PoolWorker {
  readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private failure?: Error;

  constructor() {
    this.worker = spawnWorker();
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'result' || (m.type === 'error' && m.id !== undefined)) {
        const p = this.pending.get(m.id!);
        if (!p) return;
        this.pending.delete(m.id!);
        if (m.type === 'result') p.resolve(m);
        else p.reject(new Error(`classifier worker: ${m.message}`));
      }
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(err));
    this.worker.on('exit', (code) => fail(new Error(`classifier worker exited (code ${code})`)));
  }

  init(msg: Extract<ToWorker, { type: 'init' }>): Promise<Extract<FromWorker, { type: 'ready' }>> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') {
          cleanup();
          resolve(m);
        } else if (m.type === 'error' && m.id === undefined) {
          cleanup();
          reject(new Error(`classifier worker failed to start: ${m.message}`));
        }
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const cleanup = () => {
        this.worker.off('message', onMessage);
        this.worker.off('error', onError);
      };
      this.worker.on('message', onMessage);
      this.worker.on('error', onError);
      this.worker.postMessage(msg);
    });
  }

  run(msg: Extract<ToWorker, { type: 'run' }>): Promise<Extract<FromWorker, { type: 'result' }>> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject });
      this.worker.postMessage(msg);
    });
  }
}

/** Worker threads each holding a classifier; a drop-in `StackClassifier`. Close with `close()`. */
export class ClassifierPool implements StackClassifier {
  private nextId = 1;
  private closing?: Promise<void>;

  private constructor(
    private readonly workers: PoolWorker[],
    readonly card: Readonly<ClassifierCard>,
    /** What the CAM class score is (from the workers' classifiers). */
    readonly camScore: CamScoreKind,
    readonly camLayer: string,
    /** The backend the workers run. */
    readonly backend: string,
  ) {}

  /** Starts the workers and loads the model in each (in parallel). */
  static async create(source: PoolModelSource, opts: ClassifierPoolOptions = {}): Promise<ClassifierPool> {
    const threads = opts.threads ?? availableParallelism();
    if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`threads must be a positive integer, got ${opts.threads}`);
    let serialized: SerializedSource;
    if ('modelDir' in source) {
      serialized = { modelDir: source.modelDir };
    } else {
      const { modelJson, weights } = await serializeModel(source.model);
      serialized = { modelJson, weights, card: source.card };
    }
    const workers = Array.from({ length: threads }, () => new PoolWorker());
    try {
      const ready = await Promise.all(
        workers.map((w) => w.init({ type: 'init', source: serialized, backend: opts.backend ?? 'wasm', batchSize: opts.batchSize ?? 8 })),
      );
      return new ClassifierPool(workers, ready[0].card, ready[0].camScore, ready[0].camLayer, ready[0].backend);
    } catch (err) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw err;
    }
  }

  get threads(): number {
    return this.workers.length;
  }

  get modelRef(): ModelRef {
    return { id: this.card.id, version: this.card.version, sha256: this.card.sha256 };
  }

  async classify(images: readonly Float32Array[], rows: number, columns: number): Promise<number[][]> {
    return (await this.dispatch(images, rows, columns, false)).probabilities;
  }

  /** As SliceClassifier.classifyWithCam; a custom `target` is not supported (functions cannot cross threads). */
  async classifyWithCam(images: readonly Float32Array[], rows: number, columns: number, opts: CamOptions = {}): Promise<CamClassification> {
    if (opts.target) throw new Error('ClassifierPool.classifyWithCam: a custom target is not supported (the CAM explains the argmax)');
    const r = await this.dispatch(images, rows, columns, true);
    return { probabilities: r.probabilities, cams: r.cams, camClasses: r.camClasses, camScore: this.camScore };
  }

  /** Terminates the workers (idempotent). */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.workers.map((w) => w.worker.terminate())).then(() => undefined);
    return this.closing;
  }

  private async dispatch(images: readonly Float32Array[], rows: number, columns: number, cams: boolean) {
    if (this.closing) throw new Error('ClassifierPool used after close()');
    const n = images.length;
    const ctx = this.card.preprocessing.channelMode === '2.5d' ? 1 : 0;
    const chunks = batchRanges(n, Math.ceil(n / this.workers.length));
    const parts = await Promise.all(
      chunks.map(([s, e], w) => {
        const cs = Math.max(0, s - ctx);
        const ce = Math.min(n, e + ctx);
        return this.workers[w].run({ type: 'run', id: this.nextId++, images: images.slice(cs, ce), rows, columns, from: s - cs, to: e - cs, cams });
      }),
    );
    return {
      probabilities: parts.flatMap((p) => p.probabilities),
      cams: parts.flatMap((p) => p.cams ?? []),
      camClasses: parts.flatMap((p) => p.camClasses ?? []),
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Worker side

async function workerMain(): Promise<void> {
  const port = parentPort!;
  let classifier: SliceClassifier | undefined;
  let queue: Promise<void> = Promise.resolve();
  const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

  const init = async (m: Extract<ToWorker, { type: 'init' }>) => {
    const { selectBackend } = await import('./backend.js');
    const sel = await selectBackend(m.backend);
    if (m.source.modelDir) {
      classifier = await SliceClassifier.load(m.source.modelDir, { batchSize: m.batchSize });
    } else {
      const json = m.source.modelJson as { modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
      const w = m.source.weights!;
      const model = await tf.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: json.modelTopology,
          weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
          weightData: w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) as ArrayBuffer,
        }),
      );
      classifier = await SliceClassifier.fromModel(model, m.source.card!, { batchSize: m.batchSize });
    }
    port.postMessage({ type: 'ready', card: { ...classifier.card }, camScore: classifier.camScore, camLayer: classifier.camLayer, backend: sel.name } satisfies FromWorker);
  };

  const run = async (m: Extract<ToWorker, { type: 'run' }>) => {
    const c = classifier!;
    const inputs = c.prepare(m.images, m.rows, m.columns).slice(m.from, m.to);
    if (m.cams) {
      const r = await c.classifyPreparedWithCam(inputs, m.rows, m.columns);
      const reply: FromWorker = { type: 'result', id: m.id, probabilities: r.probabilities, cams: r.cams, camClasses: r.camClasses };
      port.postMessage(reply, r.cams.map((x) => x.buffer as ArrayBuffer));
    } else {
      port.postMessage({ type: 'result', id: m.id, probabilities: await c.classifyPrepared(inputs) } satisfies FromWorker);
    }
  };

  port.on('message', (m: ToWorker) => {
    // One job at a time per worker: the tfjs backend is not shared between calls.
    queue = queue.then(async () => {
      try {
        if (m.type === 'init') await init(m);
        else await run(m);
      } catch (err) {
        port.postMessage({ type: 'error', id: m.type === 'run' ? m.id : undefined, message: message(err) } satisfies FromWorker);
      }
    });
  });
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG]) {
  void workerMain();
}
