import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/inference/backend.js';
import { preprocessParamsFor } from '../../src/inference/preprocess.js';
import { loadPhantom, prepareStacks } from '../../src/training/data/index.js';
import { epochPlan, type PlanItem } from '../../src/training/data/samples.js';
import { parseProtocol } from '../../src/training/protocol.js';
import { buildTrainingModel } from '../../src/training/models/index.js';
import { ReplicaPool, shardItems } from '../../src/training/replicas.js';
import { batchGradients, batchTensors, trainableVariables } from '../../src/training/step.js';
import { runTraining } from '../../src/training/train.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-replicas-'));
  await selectBackend('wasm');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const P = parseProtocol({
  name: 'unit-replicas',
  architecture: 'cbr_compact',
  inputSize: 32,
  channelMode: '2.5d',
  epochs: 1,
  batchSize: 16,
  learningRate: 0.01,
  oversample: 2,
  rotationDegrees: 30,
  folds: 1,
  seed: 3,
  finalModel: true,
  headDropout: 0, // the test compares gradients: no random dropout masks
  replicas: 3,
});

describe('shardItems', () => {
  it('splits a batch into contiguous, near-equal shards and never makes an empty one', () => {
    expect(shardItems([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3)).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]);
    expect(shardItems([0, 1], 4)).toEqual([[0], [1]]);
    expect(shardItems([0, 1, 2, 3], 1)).toEqual([[0, 1, 2, 3]]);
  });
});

describe('data-parallel replicas (worker threads)', () => {
  it('the combined gradient is the size-weighted mean of the shard gradients computed on one thread', async () => {
    const params = preprocessParamsFor('cbr_compact', { inputSize: 32, channelMode: '2.5d' });
    const subjects = loadPhantom(2, 5, { rows: 96 });
    const stacks = prepareStacks(
      subjects.flatMap((s) => s.stacks),
      params.clip,
      { shared: true },
    );
    const model = buildTrainingModel(P, 11);
    const vars = trainableVariables(model);
    const items = epochPlan(stacks, { oversample: 2, rotationDegrees: 30, seed: 9 }).slice(0, 10); // shards of 3, 3, 4
    const batchFor = (its: readonly PlanItem[]) => batchTensors(stacks, its, params);
    const pool = new ReplicaPool(2, { backend: 'wasm', stacks, protocol: P, params });
    try {
      await pool.startJob(
        subjects.map((s) => s.id),
        model,
      );
      // Move the weights after the job started (as an optimizer step does): each step must carry rank 0's.
      tf.tidy(() => vars.forEach((v) => v.assign(tf.add(v, tf.mul(tf.randomNormal(v.shape, 0, 1, 'float32', 7), 0.01)))));
      const tensorsBefore = tf.memory().numTensors;
      const got = await pool.gradients(model, vars, items, batchFor);
      expect(tf.memory().numTensors).toBe(tensorsBefore + got.grads.length);

      let loss = 0;
      let correct = 0;
      const expected = vars.map((v) => tf.zeros(v.shape));
      for (const shard of shardItems(items, 3)) {
        const { x, y } = batchFor(shard);
        const r = await batchGradients(model, vars, x, y);
        loss += r.loss * r.n;
        correct += r.correct;
        r.grads.forEach((g, i) => {
          const next = tf.add(expected[i]!, tf.mul(g, r.n / items.length));
          expected[i]!.dispose();
          expected[i] = next;
          g.dispose();
        });
        x.dispose();
        y.dispose();
      }
      expect(got.loss).toBeCloseTo(loss / items.length, 5);
      expect(got.correct).toBe(correct);
      // Relative to each variable's largest gradient, floored at 1e-3 of the largest overall: a conv bias
      // followed by BN has a gradient of 0 up to rounding noise.
      const gotV = await Promise.all(got.grads.map((g) => g.data()));
      const expV = await Promise.all(expected.map((g) => g.data()));
      const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      const overall = Math.max(...expV.map(maxAbs));
      expect(overall).toBeGreaterThan(0);
      let maxRel = 0;
      for (let i = 0; i < vars.length; i++) {
        const [a, b] = [gotV[i]!, expV[i]!];
        const scale = Math.max(1e-3 * overall, maxAbs(b));
        for (let j = 0; j < a.length; j++) maxRel = Math.max(maxRel, Math.abs(a[j]! - b[j]!) / scale);
      }
      expect(maxRel).toBeLessThan(1e-4);
      // And it differs from the whole batch's gradient on one thread (BN normalises each shard by itself).
      const whole = batchFor(items);
      const one = await batchGradients(model, vars, whole.x, whole.y);
      const d = await tf.tidy(() => tf.max(tf.abs(tf.sub(one.grads[0]!, got.grads[0]!)))).data();
      expect(d[0]).toBeGreaterThan(0);
      [whole.x, whole.y, ...one.grads, ...got.grads, ...expected].forEach((t) => t.dispose());

      // A helper that fails (a sample it cannot find) fails the step with its reason, leaks nothing, and the
      // pool still serves the next step.
      const tensors = tf.memory().numTensors;
      await expect(pool.gradients(model, vars, [items[0]!, items[1]!, { ...items[2]!, stack: 999 }], batchFor)).rejects.toThrow(/training replica/);
      expect(tf.memory().numTensors).toBe(tensors);
      const again = await pool.gradients(model, vars, items.slice(0, 6), batchFor);
      expect(again.grads).toHaveLength(vars.length);
      again.grads.forEach((g) => g.dispose());
    } finally {
      await pool.close();
      model.dispose();
    }
  }, 120_000);

  it('parallel folds each with replicas (helper threads inside fold workers) train', async () => {
    const r = await runTraining({
      protocol: { ...P, folds: 2, finalModel: false, parallelFolds: 2, replicas: 2, headDropout: undefined },
      dataset: 'phantom:4:2',
      out: join(root, 'nested'),
      backend: 'wasm',
      progress: false,
      phantomRows: 96,
    });
    expect(r.cv?.folds).toBe(2);
    expect(r.cv?.perFold).toHaveLength(2);
  }, 120_000);

  it('a run with replicas 3 trains and records replicas in the card', async () => {
    const out = join(root, 'run');
    const r = await runTraining({ protocol: { ...P, headDropout: undefined }, dataset: 'phantom:3:2', out, backend: 'wasm', progress: false, phantomRows: 96 });
    expect((r.card?.training.protocol as Record<string, unknown>).replicas).toBe(3);
    const final = JSON.parse(await readFile(join(out, 'checkpoints', 'final', 'state.json'), 'utf8'));
    expect(final.result.records).toHaveLength(1);
    expect(final.result.records[0].trainLoss).toBeGreaterThan(0);
    expect(Number.isFinite(final.result.records[0].trainLoss)).toBe(true);
    // Repeatable: every helper's dropout mask is seeded per step and shard, so a second run gives the same weights.
    const again = await runTraining({ protocol: { ...P, headDropout: undefined }, dataset: 'phantom:3:2', out: join(root, 'run-again'), backend: 'wasm', progress: false, phantomRows: 96 });
    expect(again.card?.sha256).toBe(r.card?.sha256);
  }, 120_000);
});
