import * as tf from '@tensorflow/tfjs';
import { saveModelDir } from '../../src/inference/model-dir.js';
import { preprocessParamsFor } from '../../src/inference/preprocess.js';
import { buildModel, countMacs, lastConvLayerName } from '../../src/training/models/index.js';

/**
 * Writes a small untrained CBR-Compact model directory (random weights, seeded) for tests that exercise the
 * pipeline's plumbing rather than its accuracy. Accuracy tests use models/default.
 */
export async function writeUntrainedModelDir(dir: string, inputSize = 32): Promise<string> {
  const model = buildModel('cbr_compact', { inputSize, seed: 7 });
  try {
    await saveModelDir(
      dir,
      model,
      {
        schema: 'sax-range/model-card@1',
        id: 'untrained-test-model',
        version: '0',
        architecture: 'cbr_compact',
        inputSize,
        channelMode: 'gray3',
        preprocessing: preprocessParamsFor('cbr_compact', { inputSize }),
        classes: ['OAP', 'IN', 'OBS'],
        training: {
          protocol: { name: 'none' },
          datasets: [],
          subjects: 0,
          epochs: 0,
          batchSize: 1,
          optimizer: { name: 'none' },
          seed: 7,
          backend: tf.getBackend() ?? 'cpu',
          durationSeconds: 0,
          versions: { node: process.version },
        },
        metrics: {},
        evaluation: { method: 'untrained: random weights, for plumbing tests only' },
        license: { data: 'none', citation: '' },
        createdAt: new Date().toISOString(),
      },
      { macs: countMacs, lastConvLayer: lastConvLayerName },
    );
  } finally {
    model.dispose();
  }
  return dir;
}
