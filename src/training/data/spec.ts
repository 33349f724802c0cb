/**
 * Dataset specs (DESIGN.md "CLI"): `acdc:DIR`, `dicom:DIR`, `labels:[PATH]`, `phantom:COUNT[:SEED]`, joined
 * with `+` (e.g. `acdc:../shared/data/acdc+phantom:20:1`). A `+` splits only where it is followed by
 * `kind:`, so a directory name may contain `+`.
 */

import { resolve } from 'node:path';
import { loadAcdc } from './acdc.js';
import { DICOM_LICENSE, loadDicomDataset } from './dicom.js';
import { LABELS_LICENSE, loadLabelStore } from './labels.js';
import { loadPhantom, parsePhantomSpec, PHANTOM_LICENSE } from './phantom.js';
import type { DatasetPartInfo, LabelledDataset, LabelledSubject } from './types.js';

export type DatasetSpecPart =
  | { kind: 'acdc'; dir: string; spec: string }
  | { kind: 'dicom'; dir: string; spec: string }
  | { kind: 'labels'; path?: string; spec: string }
  | { kind: 'phantom'; count: number; seed: number; spec: string };

export const DATASET_KINDS = ['acdc', 'dicom', 'labels', 'phantom'] as const;
const USAGE = 'acdc:DIR, dicom:DIR, labels:[PATH], phantom:COUNT[:SEED], joined with +';

/** Thrown for a malformed or unsupported dataset spec. */
export class DatasetSpecError extends Error {
  /** The CLI answers a user's input error with one line and exit 2, not a stack trace. */
  readonly code = 'BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'DatasetSpecError';
  }
}

/** Parses a (possibly `+`-joined) spec into its parts; throws DatasetSpecError naming the bad part. */
export function parseDatasetSpec(spec: string): DatasetSpecPart[] {
  const s = spec.trim();
  if (!s) throw new DatasetSpecError(`empty dataset spec (expected ${USAGE})`);
  const pieces = s.split(/\+(?=[A-Za-z][\w-]*:)/);
  return pieces.map((piece) => {
    const m = /^([A-Za-z][\w-]*):(.*)$/s.exec(piece.trim());
    if (!m) throw new DatasetSpecError(`dataset spec part '${piece}' has no kind (expected ${USAGE})`);
    const kind = m[1].toLowerCase();
    const rest = m[2];
    switch (kind) {
      case 'acdc':
      case 'dicom':
        if (!rest) throw new DatasetSpecError(`dataset spec '${piece}': ${kind}: needs a directory (${kind}:DIR)`);
        return { kind, dir: rest, spec: piece };
      case 'labels':
        return rest ? { kind, path: rest, spec: piece } : { kind, spec: piece };
      case 'phantom': {
        try {
          const { count, seed } = parsePhantomSpec(piece);
          return { kind, count, seed, spec: piece };
        } catch (err) {
          throw new DatasetSpecError((err as Error).message);
        }
      }
      default:
        throw new DatasetSpecError(`unknown dataset kind '${m[1]}' in '${piece}' (expected ${USAGE})`);
    }
  });
}

export interface LoadDatasetOptions {
  /** Phantom image size (default: the phantom's 256). */
  phantomRows?: number;
  /** `labels:`: the service's DATABASE_URL (unset: the SQLite file in the labels: data folder). */
  databaseUrl?: string;
}

/**
 * Loads every part of a spec and joins them. Subject ids must be unique across parts (joining the same
 * folder twice is an error). `labels:[DATADIR]` reads the labeller's store (./labels.ts); `dicom:DIR` DICOM
 * files with DIR/labels.csv (./dicom.ts).
 */
export async function loadDataset(spec: string, opts: LoadDatasetOptions = {}): Promise<LabelledDataset> {
  const parts = parseDatasetSpec(spec);
  const infos: DatasetPartInfo[] = [];
  const subjects: LabelledSubject[] = [];
  for (const part of parts) {
    let subs: LabelledSubject[];
    let skipped: string[] = [];
    let license: { data: string; citation: string };
    switch (part.kind) {
      case 'acdc': {
        const r = await loadAcdc(resolve(part.dir));
        subs = r.subjects;
        skipped = r.skipped;
        license = r.license;
        break;
      }
      case 'labels': {
        const r = await loadLabelStore({ dataDir: part.path, databaseUrl: opts.databaseUrl });
        subs = r.subjects;
        skipped = r.skipped;
        license = { ...LABELS_LICENSE };
        break;
      }
      case 'dicom': {
        const r = await loadDicomDataset(part.dir);
        subs = r.subjects;
        skipped = r.skipped;
        license = { ...DICOM_LICENSE };
        break;
      }
      case 'phantom':
        subs = loadPhantom(part.count, part.seed, opts.phantomRows ? { rows: opts.phantomRows } : {});
        license = { ...PHANTOM_LICENSE };
        break;
      default:
        throw new DatasetSpecError(`dataset kind '${(part as DatasetSpecPart).kind}' (${(part as DatasetSpecPart).spec}) is not supported for training`);
    }
    infos.push({
      spec: part.spec,
      kind: part.kind,
      subjects: subs.length,
      stacks: subs.reduce((a, s) => a + s.stacks.length, 0),
      slices: subs.reduce((a, s) => a + s.stacks.reduce((b, st) => b + st.images.length, 0), 0),
      license,
      skipped,
    });
    subjects.push(...subs);
  }
  const seen = new Set<string>();
  for (const s of subjects) {
    if (seen.has(s.id)) throw new DatasetSpecError(`subject '${s.id}' appears twice in '${spec}' (a part joined twice?)`);
    seen.add(s.id);
  }
  return { spec, parts: infos, subjects };
}

/** The licence line for a model trained on these parts: every distinct licence joined with '; '. */
export function combinedLicense(parts: readonly DatasetPartInfo[]): { data: string; citation: string } {
  const data = [...new Set(parts.map((p) => p.license.data))].join('; ');
  const citation = [...new Set(parts.map((p) => p.license.citation).filter(Boolean))].join('; ');
  return { data, citation };
}
