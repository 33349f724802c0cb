import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseProtocol } from '../../src/training/protocol.js';
import { runTraining } from '../../src/training/train.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-training-par-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const P = parseProtocol({
  name: 'unit-parallel',
  architecture: 'cbr_compact',
  inputSize: 32,
  channelMode: '2.5d',
  epochs: 1,
  batchSize: 32,
  learningRate: 0.01,
  oversample: 2,
  rotationDegrees: 30,
  folds: 2,
  seed: 3,
  finalModel: false,
  parallelFolds: 2,
});

describe('folds in worker threads', () => {
  it('trains two folds at once (shared data), reports from workers, and forwards worker errors', async () => {
    const out = join(root, 'par');
    const lines: string[] = [];
    const r = await runTraining({ protocol: P, dataset: 'phantom:4:2', out, backend: 'wasm', progress: (l) => lines.push(l), phantomRows: 96 });
    expect(r.cv?.folds).toBe(2);
    expect(r.modelDir).toBeUndefined();
    const cv = JSON.parse(await readFile(join(out, 'cv.json'), 'utf8'));
    expect(cv.folds.map((f: { epochs: unknown[] }) => f.epochs.length)).toEqual([1, 1]);
    expect(lines.some((l) => l.startsWith('[fold-1 1/2]'))).toBe(true);
    expect(lines.some((l) => l.startsWith('[fold-2 2/2]'))).toBe(true);
    // A job failing inside a worker (checkpoint from another protocol) rejects runTraining with its message.
    await expect(
      runTraining({ protocol: { ...P, learningRate: 0.02 }, dataset: 'phantom:4:2', out, backend: 'wasm', progress: false, phantomRows: 96, resume: true }),
    ).rejects.toThrow(/another protocol/);
  }, 90_000);
});
