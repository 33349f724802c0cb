import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { decodeFrame } from '../dicom/pixels.js';
import { classifyStack, type StackClassifier } from '../inference/classify-stack.js';
import { parseResult, type Result } from '../inference/result.js';
import type { Logger } from '../log.js';
import { stageDuration } from '../metrics.js';
import type { ClassifyJobData, ExportJobData } from '../queue/jobs.js';
import { assembleStacks, chooseEdPhase, chooseEsPhase, midVentricularSlices } from '../stack/index.js';
import type { CineStack } from '../stack/types.js';
import type { Spool } from '../spool/spool.js';
import { readStudyMetas, writeDoneMarker } from '../spool/study.js';
import { writeFileAtomic, writeStackOutputs } from './outputs.js';

export interface PhaseSummary {
  phaseIndex: number;
  triggerTime?: number;
  method: string;
  warning?: string;
}

export interface StackOutcome {
  stackId: string;
  slices: number;
  phases: number;
  ED: { phaseIndex: number; method: string; inRange: Result['phases']['ED']['inRange'] };
  ES: { phaseIndex: number; method: string; inRange: Result['phases']['ES']['inRange'] };
  order: Result['order'];
  problems: string[];
  resultPath: string;
  outputs: number;
}

export interface ClassifyResult {
  studyInstanceUID: string;
  processedBy: { host: string; pid: number };
  stacks: StackOutcome[];
  setAside: number;
  timings: Record<string, number>;
}

export interface ClassifyDeps {
  spool: Spool;
  resultsDir: string;
  logger: Logger;
  processedBy: { host: string; pid: number };
  jobId: string;
  classifier: StackClassifier;
  /** Stores the result document of a stack in the database (absent: files only). */
  saveResult?: (doc: Result) => Promise<void>;
  /** Hands the written objects of a stack to the export queue (absent: no export). */
  enqueueExport?: (data: ExportJobData) => Promise<void>;
}

/** Frames decoded once per job: ES detection and classification share them. */
export type FrameCache = Map<string, Float32Array>;

async function frameOf(stack: CineStack, cache: FrameCache, s: number, p: number): Promise<Float32Array> {
  const key = `${s}/${p}`;
  let f = cache.get(key);
  if (!f) {
    const ref = stack.slices[s]!.frames[p]!;
    f = (await decodeFrame(ref.path, ref.frame ?? 0)).data;
    cache.set(key, f);
  }
  return f;
}

/** ED by trigger time; ES from the images of the mid-ventricular slices (only those frames are decoded). */
export async function choosePhases(stack: CineStack, cache: FrameCache = new Map()): Promise<{ ED: PhaseSummary; ES: PhaseSummary }> {
  const ed = chooseEdPhase(stack);
  const mid = midVentricularSlices(stack.slices.length);
  for (const s of mid) for (let p = 0; p < stack.phases; p++) await frameOf(stack, cache, s, p);
  const es = chooseEsPhase((s, p) => cache.get(`${s}/${p}`)!, stack, { sliceIndices: mid });
  const pick = (c: { phaseIndex: number; triggerTime?: number; method: string; warning?: string }): PhaseSummary => ({
    phaseIndex: c.phaseIndex,
    ...(c.triggerTime !== undefined ? { triggerTime: c.triggerTime } : {}),
    method: c.method,
    ...(c.warning ? { warning: c.warning } : {}),
  });
  return { ED: pick(ed), ES: pick(es) };
}

/**
 * The classify job: re-reads the study from the spool (the job carries no pixels), assembles the stacks, and
 * for each: ED/ES, classification with Grad-CAM, SR/SC/KOS files and the result JSON
 * (`<resultsDir>/<Study>/<stackId>.json`), then hands the objects to the export queue. Writes the done marker
 * last, so that a crash before it makes a restart process the study again (outputs have deterministic UIDs:
 * a second run replaces, never duplicates).
 */
export async function processClassifyJob(data: ClassifyJobData, deps: ClassifyDeps): Promise<ClassifyResult> {
  const t0 = performance.now();
  const files = await readStudyMetas(deps.spool, data.studyInstanceUID);
  const assembly = assembleStacks(files.metas);
  const timings: Record<string, number> = { assembleMs: Math.round(performance.now() - t0) };
  const stacks: StackOutcome[] = [];
  const studyResults = join(deps.resultsDir, data.studyInstanceUID);
  for (const stack of assembly.stacks) {
    const log = deps.logger.child({ studyInstanceUID: data.studyInstanceUID, stackId: stack.stackId });
    const t1 = performance.now();
    const cache: FrameCache = new Map();
    const phases = await choosePhases(stack, cache);
    const phasesMs = Math.round(performance.now() - t1);
    const classified = await classifyStack(stack, phases, (s, p) => frameOf(stack, cache, s, p), deps.classifier, {
      cams: true,
      logger: log,
      timings: { phasesMs },
    });
    const t2 = performance.now();
    const written = await writeStackOutputs({ ...classified, stack, dir: join(studyResults, stack.stackId) });
    const buildMs = Math.round(performance.now() - t2);
    const result = parseResult({
      ...classified.result,
      outputs: written.refs,
      timings: { ...classified.result.timings, buildMs },
    });
    const resultPath = join(studyResults, `${stack.stackId}.json`);
    await writeFileAtomic(resultPath, JSON.stringify(result, null, 2));
    await deps.saveResult?.(result);
    if (deps.enqueueExport) {
      await deps.enqueueExport({
        studyInstanceUID: data.studyInstanceUID,
        stackId: stack.stackId,
        epoch: data.epoch,
        resultPath,
        files: written.refs.map((r) => r.path!),
      });
    }
    const ed = result.phases.ED;
    const es = result.phases.ES;
    log.info(
      { ed: ed.phaseIndex, es: es.phaseIndex, inED: [ed.inRange.first, ed.inRange.last], inES: [es.inRange.first, es.inRange.last], objects: written.refs.length },
      'stack classified',
    );
    stacks.push({
      stackId: stack.stackId,
      slices: stack.slices.length,
      phases: stack.phases,
      ED: { phaseIndex: ed.phaseIndex, method: ed.method, inRange: ed.inRange },
      ES: { phaseIndex: es.phaseIndex, method: es.method, inRange: es.inRange },
      order: result.order,
      problems: stack.problems.map((p) => p.message),
      resultPath,
      outputs: written.refs.length,
    });
  }
  timings.totalMs = Math.round(performance.now() - t0);
  stageDuration.observe({ stage: 'classify' }, timings.totalMs / 1000);
  await writeDoneMarker(deps.spool, data.studyInstanceUID, {
    epoch: data.epoch,
    instanceCount: files.instanceCount,
    jobId: deps.jobId,
    finishedAt: new Date().toISOString(),
  });
  return { studyInstanceUID: data.studyInstanceUID, processedBy: deps.processedBy, stacks, setAside: assembly.setAside.length, timings };
}
