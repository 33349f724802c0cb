import { buildResult, type Result } from '../../src/inference/result.js';

/**
 * A valid result@1 document for persistence and API tests: `slices` slices, the middle ones IN (the
 * probabilities make the decoding pick slices 1 … n-2), SOP Instance UIDs derived from the study UID.
 */
export function makeResultDoc(studyInstanceUID: string, stackId: string, opts: { slices?: number; sha256?: string } = {}): Result {
  const n = opts.slices ?? 6;
  const phase = (p: number) => ({
    phaseIndex: p,
    triggerTime: p * 40,
    method: p === 0 ? 'min-trigger-time' : 'min-blood-pool',
    slices: Array.from({ length: n }, (_, i) => ({
      index: i,
      position: i * 8,
      sopInstanceUID: sopOf(studyInstanceUID, p, i),
      probabilities: i === 0 ? [0.8, 0.1, 0.1] : i === n - 1 ? [0.1, 0.1, 0.8] : [0.1, 0.8, 0.1],
    })),
  });
  return buildResult({
    studyInstanceUID,
    stackId,
    seriesInstanceUIDs: [`${studyInstanceUID}.1`],
    model: { id: 'test-model', version: '1', sha256: opts.sha256 ?? 'a'.repeat(64) },
    order: { direction: 'apex-to-base', method: 'geometry' },
    phases: { ED: phase(0), ES: phase(7) },
    timings: { totalMs: 12 },
  });
}

/** The SOP Instance UID makeResultDoc gives slice `index` of phase `phaseIndex` (0 = ED, 7 = ES). */
export function sopOf(studyInstanceUID: string, phaseIndex: number, index: number): string {
  return `${studyInstanceUID}.2.${phaseIndex}.${index + 1}`;
}
