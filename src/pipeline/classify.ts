import { performance } from 'node:perf_hooks';
import { decodeFrame } from '../dicom/pixels.js';
import type { Logger } from '../log.js';
import type { ClassifyJobData } from '../queue/jobs.js';
import { apexToBase, assembleStacks, chooseEdPhase, chooseEsPhase, midVentricularSlices } from '../stack/index.js';
import type { CineStack } from '../stack/types.js';
import type { Spool } from '../spool/spool.js';
import { readStudyMetas, writeDoneMarker } from '../spool/study.js';

export interface PhaseSummary {
  phaseIndex: number;
  triggerTime?: number;
  method: string;
  warning?: string;
}

export interface StackOutcome {
  stackId: string;
  seriesInstanceUIDs: string[];
  slices: number;
  phases: number;
  order: { direction: 'apex-to-base'; method: string; confidence: number; ambiguous: boolean; sliceIndices: number[] };
  ED: PhaseSummary;
  ES: PhaseSummary;
  problems: string[];
}

export interface ClassifyResult {
  studyInstanceUID: string;
  processedBy: { host: string; pid: number };
  stacks: StackOutcome[];
  timings: Record<string, number>;
}

export interface ClassifyDeps {
  spool: Spool;
  resultsDir: string;
  logger: Logger;
  processedBy: { host: string; pid: number };
  jobId: string;
}

/** ES from the images of the mid-ventricular slices: only those frames are decoded. */
export async function choosePhases(stack: CineStack): Promise<{ ED: PhaseSummary; ES: PhaseSummary }> {
  const ed = chooseEdPhase(stack);
  const mid = midVentricularSlices(stack.slices.length);
  const frames = new Map<string, Float32Array>();
  for (const s of mid) {
    for (let p = 0; p < stack.phases; p++) {
      const f = stack.slices[s]!.frames[p]!;
      frames.set(`${s}/${p}`, (await decodeFrame(f.path, f.frame)).data);
    }
  }
  const es = chooseEsPhase((s, p) => frames.get(`${s}/${p}`)!, stack, { sliceIndices: mid });
  const pick = (c: { phaseIndex: number; triggerTime?: number; method: string; warning?: string }): PhaseSummary => ({
    phaseIndex: c.phaseIndex,
    ...(c.triggerTime !== undefined ? { triggerTime: c.triggerTime } : {}),
    method: c.method,
    ...(c.warning ? { warning: c.warning } : {}),
  });
  return { ED: pick(ed), ES: pick(es) };
}

/**
 * The classify job: re-reads the study from the spool (the job carries no pixels), assembles the stacks,
 * chooses ED and ES for each. Writes the done marker when finished, so a restart does not redo it.
 */
export async function processClassifyJob(data: ClassifyJobData, deps: ClassifyDeps): Promise<ClassifyResult> {
  const t0 = performance.now();
  const files = await readStudyMetas(deps.spool, data.studyInstanceUID);
  const assembly = assembleStacks(files.metas);
  const t1 = performance.now();
  const stacks: StackOutcome[] = [];
  for (const stack of assembly.stacks) {
    const order = apexToBase(stack);
    const phases = await choosePhases(stack);
    stacks.push({
      stackId: stack.stackId,
      seriesInstanceUIDs: stack.seriesInstanceUIDs,
      slices: stack.slices.length,
      phases: stack.phases,
      order: {
        direction: 'apex-to-base',
        method: order.method,
        confidence: Number(order.confidence.toFixed(3)),
        ambiguous: order.ambiguous,
        sliceIndices: order.order,
      },
      ...phases,
      problems: stack.problems.map((p) => p.message),
    });
    deps.logger.info(
      { studyInstanceUID: data.studyInstanceUID, stackId: stack.stackId, ed: phases.ED.phaseIndex, es: phases.ES.phaseIndex },
      'phases chosen',
    );
  }
  const t2 = performance.now();
  await writeDoneMarker(deps.spool, data.studyInstanceUID, {
    epoch: data.epoch,
    instanceCount: files.instanceCount,
    jobId: deps.jobId,
    finishedAt: new Date().toISOString(),
  });
  return {
    studyInstanceUID: data.studyInstanceUID,
    processedBy: deps.processedBy,
    stacks,
    timings: { assembleMs: Math.round(t1 - t0), phasesMs: Math.round(t2 - t1) },
  };
}
