/**
 * Installed ImageNet weights (docs/training.md "ImageNet weights"): the keras-applications `*_notop.h5` files
 * in one folder (default `models/imagenet`), under their release file names. I/O edge of the model registry:
 * resolves the file of an architecture, checks its md5 against Keras' published `file_hash` where Keras gives
 * one (and against `SHA256SUMS` in the folder when the site wrote one), then assigns it by layer name.
 */

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { APPLICATIONS, applicationKey, KERAS_APPLICATIONS_URL, weightsFileFor } from './applications.js';
import { KerasWeightsError, loadKerasWeights, type AssignReport } from './keras-h5.js';

export const DEFAULT_IMAGENET_WEIGHTS_DIR = 'models/imagenet';

/** Path of an architecture's weight file in `dir` at width `alpha` (not checked for existence). */
export function imagenetWeightsPath(arch: string, dir = DEFAULT_IMAGENET_WEIGHTS_DIR, alpha = 1): string {
  const key = applicationKey(arch);
  if (!key) throw new RangeError(`'${arch}' has no ImageNet weights (known: ${Object.keys(APPLICATIONS).join(', ')})`);
  return join(dir, weightsFileFor(key, alpha));
}

/** Parses `sha256sum` output: `<hex>  <file>` per line. */
export function parseSha256Sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(.+?)\s*$/i.exec(line);
    if (m) out.set(m[2], m[1].toLowerCase());
  }
  return out;
}

export interface ImagenetLoadReport extends AssignReport {
  path: string;
  /** Which checks the file passed: 'md5 (Keras)', 'sha256 (SHA256SUMS)'. */
  verified: string[];
}

/**
 * Loads the ImageNet weights of `arch` from `dir` into `model`'s base. Throws a KerasWeightsError naming the
 * file and where to get it when it is missing, and when a checksum does not match.
 */
export async function loadImagenetWeights(model: tf.LayersModel, arch: string, dir = DEFAULT_IMAGENET_WEIGHTS_DIR, alpha = 1): Promise<ImagenetLoadReport> {
  const key = applicationKey(arch)!;
  const spec = APPLICATIONS[key];
  const file = weightsFileFor(key, alpha);
  const path = join(dir, file);
  const url = file === spec.weightsFile ? spec.weightsUrl : `${KERAS_APPLICATIONS_URL}/${spec.weightsUrl.split('/').slice(-2, -1)[0]}/${file}`;
  if (!existsSync(path)) {
    throw new KerasWeightsError(`ImageNet weights for ${spec.kerasName}: ${path} not found (get ${url}; docs/training.md "ImageNet weights")`);
  }
  const bytes = await readFile(path);
  const verified: string[] = [];
  if (spec.weightsMd5 && file === spec.weightsFile) {
    const md5 = createHash('md5').update(bytes).digest('hex');
    if (md5 !== spec.weightsMd5) throw new KerasWeightsError(`ImageNet weights ${path}: md5 ${md5}, Keras publishes ${spec.weightsMd5} (corrupt or another file)`);
    verified.push('md5 (Keras)');
  }
  const sums = join(dir, 'SHA256SUMS');
  if (existsSync(sums)) {
    const want = parseSha256Sums(await readFile(sums, 'utf8')).get(file);
    if (want) {
      const got = createHash('sha256').update(bytes).digest('hex');
      if (got !== want) throw new KerasWeightsError(`ImageNet weights ${path}: sha256 ${got}, ${sums} says ${want}`);
      verified.push('sha256 (SHA256SUMS)');
    }
  }
  return { ...(await loadKerasWeights(model, path)), path, verified };
}
