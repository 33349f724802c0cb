/**
 * What the viewer and the labeller see of a study: its stacks with the ED and ES slices apex → base, read
 * from the spool (so that a study can be opened before, or without, classification) and from the result
 * documents (which, when present, fix the phases, the slice order and the slice → SOP Instance mapping).
 * Also finds the file and frame behind one slice, and the Grad-CAM secondary capture the worker wrote for it.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { parseHeader } from '../dicom/meta.js';
import { parseResult, type PhaseKey, type Result } from '../inference/result.js';
import { choosePhases, type PhaseSummary } from '../pipeline/classify.js';
import { kosInstanceUid, montageInstanceUid, sliceScInstanceUid, srInstanceUid, type UidContext } from '../sr/uid.js';
import { apexToBase, assembleStacks, type AssemblyResult, type CineStack, type FrameRef } from '../stack/index.js';
import type { Spool } from '../spool/spool.js';
import { readStudyMetas } from '../spool/study.js';
import { orthancExplorerUrl, orthancId } from './orthanc-ids.js';

export const PHASE_KEYS: readonly PhaseKey[] = ['ED', 'ES'];

/** One slice of a phase, apex → base. */
export interface ViewSlice {
  /** Index in the stack (ascending position along the normal): the `index` of the result JSON. */
  index: number;
  /** mm along the stack normal. */
  position: number;
  sopInstanceUID: string;
  seriesInstanceUID?: string;
  /** 0-based frame of a multi-frame instance. */
  frame?: number;
}

export interface ViewPhase {
  phaseIndex: number;
  triggerTime: number | null;
  method: string;
  /** Apex → base. */
  slices: ViewSlice[];
}

export interface ViewStack {
  stackId: string;
  seriesInstanceUIDs: string[];
  rows?: number;
  columns?: number;
  /** Slices and phases of the whole stack. */
  sliceCount: number;
  phaseCount?: number;
  problems: string[];
  /** True when a result document exists: phases and order then come from it. */
  classified: boolean;
  /** Whether the source images are in the spool (false: only the result document is left). */
  inSpool: boolean;
  order: { direction: 'apex-to-base'; method: string; message?: string };
  phases: Record<PhaseKey, ViewPhase>;
}

export interface StudyView {
  studyInstanceUID: string;
  instancesInSpool: number;
  stacks: ViewStack[];
  setAside: Array<{ seriesInstanceUID: string; code: string; reason: string; images: number }>;
  /** Orthanc Explorer links (only with an Orthanc URL). */
  orthanc?: OrthancLinks;
}

/** Links into Orthanc Explorer; the ids are Orthanc's (orthancId), so links to objects not in Orthanc (yet) lead nowhere. */
export interface OrthancLinks {
  study: string;
  /** Source slices at ED and ES and every object written, by SOP Instance UID. */
  instances: Record<string, string>;
  /** Per classified stack: its objects with a label ("Structured report", "Key objects ED", …) and the Grad-CAM capture of each slice (`ED/<index>`). */
  stacks: Record<string, { objects: Array<{ label: string; url: string }>; captures: Record<string, string> }>;
}

/** A study or a slice that is not there (404). */
export class NotFoundError extends Error {
  readonly code = 'NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** A study whose spool is read and assembled: what the cache keeps. */
interface Assembled {
  instanceCount: number;
  assembly: AssemblyResult;
  patientId?: string;
  /** ED/ES of unclassified stacks (decodes the mid-ventricular frames once). */
  phases: Map<string, Promise<{ ED: PhaseSummary; ES: PhaseSummary }>>;
  checkedAt: number;
}

export interface StudyViewsOptions {
  spool: Pick<Spool, 'listInstances' | 'studyDir'>;
  /** `<resultsDir>/<StudyUID>/<stackId>.json`. */
  resultsDir: string;
  /** Orthanc base URL shown to browsers (no credentials). */
  orthancUrl?: string;
  /**
   * Studies whose assembly is kept in memory.
   * @defaultValue 16
   */
  cacheSize?: number;
  /**
   * How long a cached assembly is used without counting the spool's files again (ms).
   * @defaultValue 2000
   */
  recheckMs?: number;
}

/** Reads and caches study views; one per API process. */
export class StudyViews {
  private readonly cache = new Map<string, Promise<Assembled>>();
  private readonly cacheSize: number;
  private readonly recheckMs: number;

  constructor(private readonly opts: StudyViewsOptions) {
    this.cacheSize = opts.cacheSize ?? 16;
    this.recheckMs = opts.recheckMs ?? 2000;
  }

  /** The result documents of a study by stackId (unreadable or invalid documents are an error, not skipped). */
  async results(studyUID: string): Promise<Map<string, Result>> {
    const dir = join(this.opts.resultsDir, studyUID);
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
    } catch {
      return new Map();
    }
    const out = new Map<string, Result>();
    for (const n of names) {
      const doc = parseResult(JSON.parse(await readFile(join(dir, n), 'utf8')));
      out.set(doc.stackId, doc);
    }
    return out;
  }

  private async assembled(studyUID: string): Promise<Assembled> {
    const now = Date.now();
    const hit = this.cache.get(studyUID);
    if (hit) {
      const a = await hit.catch(() => undefined);
      if (a && now - a.checkedAt < this.recheckMs) return a;
      if (a && (await this.opts.spool.listInstances(studyUID)).length === a.instanceCount) {
        a.checkedAt = now;
        return a;
      }
    }
    const p = this.read(studyUID);
    this.cache.delete(studyUID);
    this.cache.set(studyUID, p);
    p.catch(() => this.cache.delete(studyUID));
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as string);
    return p;
  }

  private async read(studyUID: string): Promise<Assembled> {
    const files = await readStudyMetas(this.opts.spool as Spool, studyUID);
    const assembly = assembleStacks(files.metas);
    let patientId: string | undefined;
    const first = files.metas[0];
    if (first && this.opts.orthancUrl) {
      const v = parseHeader(await readFile(first.path)).dataset.PatientID;
      patientId = typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : '';
    }
    return { instanceCount: files.instanceCount, assembly, patientId, phases: new Map(), checkedAt: Date.now() };
  }

  private edEs(a: Assembled, stack: CineStack): Promise<{ ED: PhaseSummary; ES: PhaseSummary }> {
    let p = a.phases.get(stack.stackId);
    if (!p) {
      p = choosePhases(stack);
      a.phases.set(stack.stackId, p);
      p.catch(() => a.phases.delete(stack.stackId));
    }
    return p;
  }

  /** The study's stacks with their ED and ES slices; NotFoundError when neither spool nor results know it. */
  async view(studyUID: string): Promise<StudyView> {
    const [a, results] = await Promise.all([this.assembled(studyUID), this.results(studyUID)]);
    if (a.instanceCount === 0 && results.size === 0) throw new NotFoundError(`study ${studyUID} is neither in the spool nor classified`);
    const stacks: ViewStack[] = [];
    const seen = new Set<string>();
    for (const stack of a.assembly.stacks) {
      seen.add(stack.stackId);
      const result = results.get(stack.stackId);
      stacks.push(result ? fromResult(result, stack) : await this.unclassified(a, stack));
    }
    for (const [stackId, result] of results) if (!seen.has(stackId)) stacks.push(fromResult(result, undefined));
    const view: StudyView = {
      studyInstanceUID: studyUID,
      instancesInSpool: a.instanceCount,
      stacks,
      setAside: a.assembly.setAside.map((s) => ({ seriesInstanceUID: s.seriesInstanceUID, code: s.code, reason: s.reason, images: s.sopInstanceUIDs.length })),
    };
    if (this.opts.orthancUrl && a.patientId !== undefined) view.orthanc = orthancLinks(this.opts.orthancUrl, a.patientId, studyUID, stacks, results);
    return view;
  }

  private async unclassified(a: Assembled, stack: CineStack): Promise<ViewStack> {
    const chosen = await this.edEs(a, stack);
    const order = apexToBase(stack);
    const phase = (k: PhaseKey): ViewPhase => {
      const c = chosen[k];
      return {
        phaseIndex: c.phaseIndex,
        triggerTime: c.triggerTime ?? null,
        method: c.method,
        slices: order.order.map((i) => {
          const s = stack.slices.find((x) => x.index === i)!;
          return viewSlice(s.index, s.position, s.frames[c.phaseIndex]!);
        }),
      };
    };
    return {
      ...stackFacts(stack),
      classified: false,
      inSpool: true,
      order: { direction: 'apex-to-base', method: 'geometry', ...(order.message ? { message: order.message } : {}) },
      phases: { ED: phase('ED'), ES: phase('ES') },
    };
  }

  /**
   * The source file and frame of one slice (`index` as in the result JSON) at ED or ES, and its Grad-CAM SC
   * file when the stack is classified. NotFoundError names what is missing.
   */
  async slice(studyUID: string, stackId: string, phase: PhaseKey, index: number): Promise<{ frame?: FrameRef; camPath?: string; result?: Result }> {
    const [a, results] = await Promise.all([this.assembled(studyUID), this.results(studyUID)]);
    const stack = a.assembly.stacks.find((s) => s.stackId === stackId);
    const result = results.get(stackId);
    if (!stack && !result) throw new NotFoundError(`study ${studyUID} has no stack ${stackId}`);
    if (result) {
      const p = result.phases[phase];
      const pos = p.slices.findIndex((s) => s.index === index);
      if (pos < 0) throw new NotFoundError(`stack ${stackId} has no slice ${index} at ${phase}`);
      const s = p.slices[pos]!;
      const frame = stack ? findFrame(stack, index, p.phaseIndex, s.sopInstanceUID) : undefined;
      const camPath = camScPath(this.opts.resultsDir, result, phase, pos, s.sopInstanceUID, frame?.frame);
      return { frame, camPath, result };
    }
    const chosen = await this.edEs(a, stack!);
    const slice = stack!.slices.find((s) => s.index === index);
    const frame = slice?.frames[chosen[phase].phaseIndex];
    if (!frame) throw new NotFoundError(`stack ${stackId} has no slice ${index} at ${phase}`);
    return { frame };
  }
}

function viewSlice(index: number, position: number, f: FrameRef | undefined, sop?: string): ViewSlice {
  return {
    index,
    position: Math.round(position * 100) / 100,
    sopInstanceUID: sop ?? f!.sopInstanceUID,
    ...(f ? { seriesInstanceUID: f.seriesInstanceUID } : {}),
    ...(f?.frame !== undefined ? { frame: f.frame } : {}),
  };
}

function stackFacts(stack: CineStack): Pick<ViewStack, 'stackId' | 'seriesInstanceUIDs' | 'rows' | 'columns' | 'sliceCount' | 'phaseCount' | 'problems'> {
  return {
    stackId: stack.stackId,
    seriesInstanceUIDs: stack.seriesInstanceUIDs,
    rows: stack.rows,
    columns: stack.columns,
    sliceCount: stack.slices.length,
    phaseCount: stack.phases,
    problems: stack.problems.map((p) => p.message),
  };
}

/** A classified stack: phases, order and SOP Instance UIDs from the result document. */
function fromResult(result: Result, stack: CineStack | undefined): ViewStack {
  const phase = (k: PhaseKey): ViewPhase => {
    const p = result.phases[k];
    return {
      phaseIndex: p.phaseIndex,
      triggerTime: p.triggerTime,
      method: p.method,
      slices: p.slices.map((s) => viewSlice(s.index, s.position, stack ? findFrame(stack, s.index, p.phaseIndex, s.sopInstanceUID) : undefined, s.sopInstanceUID)),
    };
  };
  return {
    ...(stack
      ? stackFacts(stack)
      : { stackId: result.stackId, seriesInstanceUIDs: result.seriesInstanceUIDs, sliceCount: result.phases.ED.slices.length, problems: [] }),
    classified: true,
    inSpool: stack !== undefined,
    order: { direction: 'apex-to-base', method: result.order.method, ...(result.order.message ? { message: result.order.message } : {}) },
    phases: { ED: phase('ED'), ES: phase('ES') },
  };
}

/**
 * The frame of a classified slice: normally `slices[index].frames[phaseIndex]`; if the study changed since
 * (instances added or replaced), the frame that carries the result's SOP Instance UID, wherever it is.
 */
function findFrame(stack: CineStack, index: number, phaseIndex: number, sopInstanceUID: string): FrameRef | undefined {
  const f = stack.slices.find((s) => s.index === index)?.frames[phaseIndex];
  if (f?.sopInstanceUID === sopInstanceUID) return f;
  for (const s of stack.slices) for (const g of s.frames) if (g.sopInstanceUID === sopInstanceUID) return g;
  return undefined;
}

/**
 * The Grad-CAM secondary capture of slice `pos` (apex → base) of a phase: its SOP Instance UID is
 * deterministic (src/sr/uid.ts), and the result's `outputs` give its file. Only paths under the results
 * folder are returned.
 */
function uidContextOf(result: Result): UidContext {
  return { studyInstanceUID: result.studyInstanceUID, stackId: result.stackId, seriesInstanceUIDs: result.seriesInstanceUIDs, modelSha256: result.model.sha256 };
}

function camScPath(resultsDir: string, result: Result, phase: PhaseKey, pos: number, sopInstanceUID: string, frame: number | undefined): string | undefined {
  const ctx = uidContextOf(result);
  const uids = [sliceScInstanceUid(ctx, phase, pos, { sopInstanceUID })];
  if (frame !== undefined) uids.unshift(sliceScInstanceUid(ctx, phase, pos, { sopInstanceUID, frameNumber: frame + 1 }));
  const root = resolve(resultsDir) + sep;
  for (const uid of uids) {
    const out = result.outputs.find((o) => o.kind === 'sc' && o.sopInstanceUID === uid && o.path);
    if (out && resolve(out.path!).startsWith(root)) return resolve(out.path!);
  }
  return undefined;
}

function orthancLinks(base: string, patientId: string, studyUID: string, stacks: ViewStack[], results: Map<string, Result>): OrthancLinks {
  const instances: Record<string, string> = {};
  const url = (series: string, sop: string) => orthancExplorerUrl(base, 'instance', orthancId(patientId, studyUID, series, sop));
  for (const st of stacks) {
    for (const k of PHASE_KEYS) for (const s of st.phases[k].slices) if (s.seriesInstanceUID) instances[s.sopInstanceUID] ??= url(s.seriesInstanceUID, s.sopInstanceUID);
  }
  const byStack: OrthancLinks['stacks'] = {};
  for (const r of results.values()) {
    const ctx = uidContextOf(r);
    const outputs = new Map(r.outputs.map((o) => [o.sopInstanceUID, o]));
    const link = (sop: string) => {
      const o = outputs.get(sop);
      return o ? (instances[sop] ??= url(o.seriesInstanceUID, sop)) : undefined;
    };
    const objects: Array<{ label: string; url: string }> = [];
    const named: Array<[string, string]> = [
      ['Structured report', srInstanceUid(ctx)],
      ['Key objects ED (IN slices)', kosInstanceUid(ctx, 'ED')],
      ['Key objects ES (IN slices)', kosInstanceUid(ctx, 'ES')],
      ['Montage ED', montageInstanceUid(ctx, 'ED')],
      ['Montage ES', montageInstanceUid(ctx, 'ES')],
    ];
    for (const [label, sop] of named) {
      const u = link(sop);
      if (u) objects.push({ label, url: u });
    }
    const captures: Record<string, string> = {};
    const st = stacks.find((s) => s.stackId === r.stackId);
    for (const k of PHASE_KEYS) {
      r.phases[k].slices.forEach((s, pos) => {
        const frame = st?.phases[k].slices[pos]?.frame;
        const ids = [sliceScInstanceUid(ctx, k, pos, { sopInstanceUID: s.sopInstanceUID })];
        if (frame !== undefined) ids.unshift(sliceScInstanceUid(ctx, k, pos, { sopInstanceUID: s.sopInstanceUID, frameNumber: frame + 1 }));
        for (const id of ids) {
          const u = link(id);
          if (u) {
            captures[`${k}/${s.index}`] = u;
            break;
          }
        }
      });
    }
    byStack[r.stackId] = { objects, captures };
  }
  return { study: orthancExplorerUrl(base, 'study', orthancId(patientId, studyUID)), instances, stacks: byStack };
}
