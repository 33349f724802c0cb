/**
 * Synchronous data-parallel training over worker threads: one job's batch is split into `replicas` shards;
 * the job's own thread (rank 0) computes the gradient of its shard while each helper thread computes its
 * shard's on a replica of the model; rank 0 averages them (weighted by shard size, which gives exactly the
 * gradient of the batch's mean loss) and takes the optimizer step; before the next step every helper receives
 * the updated trainable weights. The tfjs WASM backend is single-threaded in Node (notes/ml-backends.md §2),
 * so this is how one training run uses more than one core.
 *
 * What differs from one thread: batch normalisation normalises each shard with the shard's own statistics
 * (batchSize/replicas samples; PyTorch DistributedDataParallel without SyncBatchNorm does the same), and only
 * rank 0's BN moving statistics are kept (precise BN, src/training/precise-bn.ts, recomputes them anyway when
 * enabled). Dropout masks are drawn per thread. Everything else — the plan of samples, their order, the
 * optimizer — is rank 0's and unchanged.
 *
 * Messages per step: the trainable weights out (4 bytes × parameters per helper), one flat gradient back.
 */

import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, type BackendName } from '../inference/backend.js';
import type { PreprocessParams } from '../inference/preprocess.js';
import type { PlanItem, PreparedStack } from './data/samples.js';
import { installFastBatchNormGradient } from './models/batchnorm-gradient.js';
import { buildTrainingModel } from './models/index.js';
import type { Protocol } from './protocol.js';
import { batchGradients, batchTensors, flattenVariables, seedDropout, trainableVariables, type BatchGradients } from './step.js';
import { spawnModuleWorker } from './worker-spawn.js';
import { hashSeed } from '../phantom/prng.js';

const REPLICA_MARK = 'saxRangeReplicaWorker';

interface ReplicaInit {
  [REPLICA_MARK]: true;
  backend: BackendName;
  stacks: PreparedStack[];
  protocol: Protocol;
  params: PreprocessParams;
}

type ToReplica =
  | { type: 'job'; train: string[]; weights: Float32Array }
  | { type: 'step'; items: PlanItem[]; weights: Float32Array; dropoutSeed: number };

type FromReplica =
  | { type: 'ready' }
  | { type: 'started' }
  | { type: 'grads'; grads: Float32Array; loss: number; correct: number; n: number }
  | { type: 'error'; message: string; stack?: string };

/** Splits a batch's items into at most `parts` contiguous shards of near-equal size (no empty shard). */
export function shardItems<T>(items: readonly T[], parts: number): T[][] {
  const k = Math.max(1, Math.min(parts, items.length));
  const out: T[][] = [];
  for (let i = 0; i < k; i++) out.push(items.slice(Math.floor((i * items.length) / k), Math.floor(((i + 1) * items.length) / k)));
  return out;
}

/** Assigns a flat buffer (variable order) to `vars`. */
export function assignFlat(vars: readonly tf.Variable[], flat: Float32Array): void {
  const total = vars.reduce((a, v) => a + v.size, 0);
  if (flat.length !== total) throw new Error(`replica weights: ${flat.length} values for ${total} parameters`);
  let o = 0;
  tf.tidy(() => {
    for (const v of vars) {
      v.assign(tf.tensor(flat.subarray(o, o + v.size), v.shape, 'float32'));
      o += v.size;
    }
  });
}

function allWeights(model: tf.LayersModel): tf.Variable[] {
  return model.weights.map((w) => w.read() as tf.Variable);
}

/** Helper threads of one job (rank 0 is the caller's thread). */
export class ReplicaPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<Worker, { resolve: (m: FromReplica) => void; reject: (e: Error) => void }>();
  private readonly ready: Promise<void>;
  private dead?: Error;

  /** `helpers` threads besides the caller's (replicas − 1). */
  constructor(
    readonly helpers: number,
    init: Omit<ReplicaInit, typeof REPLICA_MARK>,
  ) {
    const readies: Promise<FromReplica>[] = [];
    for (let i = 0; i < helpers; i++) {
      const w = spawnModuleWorker(import.meta.url, { workerData: { ...init, [REPLICA_MARK]: true } satisfies ReplicaInit });
      this.workers.push(w);
      readies.push(this.expect(w));
      w.on('message', (m: FromReplica) => {
        const p = this.pending.get(w);
        this.pending.delete(w);
        if (m.type === 'error') {
          const e = new Error(`training replica: ${m.message}`);
          if (m.stack) e.stack = m.stack;
          p?.reject(e);
        } else p?.resolve(m);
      });
      const fail = (err: Error) => {
        this.dead ??= err;
        const p = this.pending.get(w);
        this.pending.delete(w);
        p?.reject(err);
      };
      w.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => fail(new Error(`training replica exited (code ${code})`)));
    }
    this.ready = Promise.all(readies).then(() => undefined);
    this.ready.catch(() => {});
  }

  /** Threads in all, the caller's included. */
  get replicas(): number {
    return this.helpers + 1;
  }

  private expect(w: Worker): Promise<FromReplica> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => this.pending.set(w, { resolve, reject }));
  }

  private async roundTrip(messages: Array<ToReplica | undefined>): Promise<Array<FromReplica | undefined>> {
    return Promise.all(
      this.workers.map((w, i) => {
        const m = messages[i];
        if (!m) return Promise.resolve(undefined);
        const r = this.expect(w);
        w.postMessage(m);
        return r;
      }),
    );
  }

  /** Gives every helper the job's training subjects and all of rank 0's weights (frozen ones and BN statistics too). */
  async startJob(train: readonly string[], model: tf.LayersModel): Promise<void> {
    await this.ready;
    const weights = await flattenVariables(allWeights(model));
    await this.roundTrip(this.workers.map(() => ({ type: 'job', train: [...train], weights })));
  }

  /**
   * One data-parallel step's gradients: shard 0 on `model` in this thread, the others on the helpers with
   * rank 0's current trainable weights. Returns the batch-mean gradient per variable (kept tensors, the
   * caller disposes them) with the batch's mean loss and correct count.
   */
  async gradients(
    model: tf.LayersModel,
    vars: tf.Variable[],
    items: readonly PlanItem[],
    batchFor: (items: readonly PlanItem[]) => { x: tf.Tensor4D; y: tf.Tensor2D },
    dropoutSeed = 0,
  ): Promise<{ grads: tf.Tensor[]; loss: number; correct: number }> {
    const shards = shardItems(items, this.replicas);
    const weights = shards.length > 1 ? await flattenVariables(vars) : undefined;
    const remote = this.roundTrip(
      this.workers.map((_, i) => (shards[i + 1] ? { type: 'step', items: shards[i + 1]!, weights: weights!, dropoutSeed: hashSeed(dropoutSeed, i + 1) } : undefined)),
    );
    remote.catch(() => {});
    seedDropout(model, hashSeed(dropoutSeed, 0));
    const { x, y } = batchFor(shards[0]!);
    let own: BatchGradients;
    try {
      own = await batchGradients(model, vars, x, y);
    } finally {
      x.dispose();
      y.dispose();
    }
    let others: Array<FromReplica | undefined>;
    try {
      others = await remote;
    } catch (err) {
      own.grads.forEach((g) => g.dispose());
      throw err;
    }
    const n = items.length;
    let loss = own.loss * own.n;
    let correct = own.correct;
    // Σ_k n_k · g_k of the helpers' flat gradients, then combined with rank 0's per variable.
    let sum: Float32Array | undefined;
    for (const m of others) {
      if (m?.type !== 'grads') continue;
      loss += m.loss * m.n;
      correct += m.correct;
      if (!sum) sum = new Float32Array(m.grads.length);
      for (let j = 0; j < sum.length; j++) sum[j]! += m.n * m.grads[j]!;
    }
    let o = 0;
    const grads = tf.tidy(() =>
      own.grads.map((g, i) => {
        const size = vars[i]!.size;
        const local = tf.mul(g, own.n);
        const total = sum ? tf.add(local, tf.tensor(sum.subarray(o, o + size), g.shape, 'float32')) : local;
        o += size;
        return tf.div(total, n);
      }),
    );
    own.grads.forEach((g) => g.dispose());
    return { grads, loss: loss / n, correct };
  }

  async close(): Promise<void> {
    this.dead ??= new Error('replica pool closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

async function replicaMain(): Promise<void> {
  const init = workerData as ReplicaInit;
  const port = parentPort!;
  const post = (m: FromReplica, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  try {
    await selectBackend(init.backend);
    installFastBatchNormGradient();
  } catch (err) {
    post({ type: 'error', message: `replica backend: ${(err as Error).message}` });
    return;
  }
  const P = init.protocol;
  const model = buildTrainingModel(P, 1);
  const vars = trainableVariables(model);
  let train: PreparedStack[] = [];
  post({ type: 'ready' });
  port.on('message', (m: ToReplica) => {
    void (async () => {
      try {
        if (m.type === 'job') {
          const ids = new Set(m.train);
          train = init.stacks.filter((s) => ids.has(s.subject));
          assignFlat(allWeights(model), m.weights);
          post({ type: 'started' });
          return;
        }
        assignFlat(vars, m.weights);
        seedDropout(model, m.dropoutSeed);
        const { x, y } = batchTensors(train, m.items, init.params);
        try {
          const r = await batchGradients(model, vars, x, y);
          const flat = await flattenVariables(r.grads);
          r.grads.forEach((g) => g.dispose());
          post({ type: 'grads', grads: flat, loss: r.loss, correct: r.correct, n: r.n }, [flat.buffer as ArrayBuffer]);
        } finally {
          x.dispose();
          y.dispose();
        }
      } catch (err) {
        post({ type: 'error', message: (err as Error).message, stack: (err as Error).stack });
      }
    })();
  });
}

if (!isMainThread && (workerData as Partial<ReplicaInit> | undefined)?.[REPLICA_MARK]) {
  void replicaMain();
}
