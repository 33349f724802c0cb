import type { Queue } from 'bullmq';
import type { Logger } from '../log.js';
import { observeStageSince } from '../metrics.js';
import { assembleStacks } from '../stack/index.js';
import type { Spool } from '../spool/spool.js';
import { countInstances, readDoneMarker, readStudyMetas } from '../spool/study.js';
import type { SeriesTracker } from '../tracker/tracker.js';
import { CLASSIFY_JOB_OPTIONS, classifyJobId, type ClassifyJobData } from './jobs.js';

const ACTIVE_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/**
 * Turns quiet studies into classify jobs. Runs on every node with the `scp` role; nodes race safely through
 * SeriesTracker.claim. Also, at start, re-schedules spooled studies whose job never completed.
 */
export class StudyScheduler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly deps: {
      tracker: SeriesTracker;
      spool: Spool;
      classifyQueue: Queue<ClassifyJobData>;
      logger: Logger;
      pollMs?: number;
    },
  ) {}

  start(): void {
    this.stopped = false;
    const loop = () => {
      if (this.stopped) return;
      this.running = this.tick()
        .then(() => undefined)
        .catch((err) => this.deps.logger.error({ err }, 'scheduler tick failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.deps.pollMs ?? 500);
        });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One pass: claim every due study and enqueue it. Returns the job ids added. */
  async tick(now = Date.now()): Promise<string[]> {
    const added: string[] = [];
    for (const { studyInstanceUID, epoch } of await this.deps.tracker.due(now)) {
      if (!(await this.deps.tracker.claim(studyInstanceUID, epoch))) continue;
      const id = await this.enqueue(studyInstanceUID, epoch);
      if (id) added.push(id);
    }
    return added;
  }

  private async enqueue(studyInstanceUID: string, epoch: number): Promise<string | undefined> {
    const { spool, tracker, classifyQueue, logger } = this.deps;
    const files = await readStudyMetas(spool, studyInstanceUID);
    const assembly = assembleStacks(files.metas);
    const data: ClassifyJobData = {
      studyInstanceUID,
      studyDir: spool.studyDir(studyInstanceUID),
      instanceCount: files.instanceCount,
      epoch,
      stacks: assembly.stacks.map((s) => ({
        stackId: s.stackId,
        seriesInstanceUIDs: s.seriesInstanceUIDs,
        slices: s.slices.length,
        phases: s.phases,
        problems: s.problems.map((p) => p.message),
      })),
      setAside: assembly.setAside.map((a) => ({
        seriesInstanceUID: a.seriesInstanceUID,
        instances: a.sopInstanceUIDs.length,
        code: a.code,
        reason: a.reason,
      })),
    };
    const summary = { stacks: data.stacks, setAside: data.setAside, unreadable: files.unreadable.length };
    if (data.stacks.length === 0) {
      await tracker.recordAssembly(studyInstanceUID, summary);
      logger.warn({ studyInstanceUID, setAside: data.setAside.length }, 'study has no short-axis cine stack; nothing queued');
      return undefined;
    }
    const jobId = classifyJobId(studyInstanceUID, epoch);
    await classifyQueue.add('classify', data, { ...CLASSIFY_JOB_OPTIONS, jobId });
    await tracker.recordJob(studyInstanceUID, jobId, summary);
    const firstSeen = (await tracker.get(studyInstanceUID))?.firstSeen;
    if (firstSeen !== undefined) observeStageSince('receive_to_ready', firstSeen);
    logger.info(
      { studyInstanceUID, jobId, stacks: data.stacks.map((s) => `${s.slices}x${s.phases}`), instances: data.instanceCount },
      'study ready: classify job queued',
    );
    return jobId;
  }

  /**
   * Start-up recovery: a spooled study whose last job did not complete (no done marker for its current
   * instance count) and that has no job waiting or running is scheduled again.
   */
  async recover(now = Date.now()): Promise<string[]> {
    const { spool, tracker, classifyQueue, logger } = this.deps;
    const rescheduled: string[] = [];
    for (const uid of await spool.listStudies()) {
      const count = await countInstances(spool, uid);
      if (count === 0) continue;
      const marker = await readDoneMarker(spool, uid);
      if (marker && marker.instanceCount === count) continue;
      if (await tracker.isPending(uid)) continue;
      const state = await tracker.get(uid);
      if (state?.lastJobId) {
        const job = await classifyQueue.getJob(state.lastJobId);
        if (job && ACTIVE_STATES.has(await job.getState())) continue;
      }
      await tracker.schedule(uid, now);
      rescheduled.push(uid);
    }
    if (rescheduled.length) logger.info({ studies: rescheduled }, 'recovered unprocessed spooled studies');
    return rescheduled;
  }
}
