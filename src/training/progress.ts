/**
 * Training progress lines with ETA (plain text, stderr by default; the structured log stays JSON).
 *
 *   [fold-2/6] epoch 3/10 batch 40/75 loss 0.5321 lr 0.009996 9.8 samples/s | job 41% ETA 4m12s | all 23% ETA 1h02m
 *
 * One reporter serves all jobs (CV folds and the final model), whether they run in-process or in worker
 * threads (which post their batch events to the main thread). samples/s and the job ETA come from the
 * job's own batch times; the overall ETA uses the batches done in this session over the wall time since the
 * reporter started, so it accounts for parallel folds.
 */

export interface BatchEvent {
  job: string;
  /** 1-based position of the job and number of jobs (for the label). */
  jobNumber: number;
  jobs: number;
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  loss: number;
  lr: number;
  /** Samples in this batch. */
  samples: number;
  /** Seconds the batch took (sample building + step). */
  seconds: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m % 60).padStart(2, '0')}m`;
}

interface JobState {
  seconds: number;
  batchesDone: number;
  samplesDone: number;
  totalBatches: number;
}

export interface ProgressOptions {
  /** Batches planned for the whole run (all jobs, all epochs), including any already done. */
  totalBatches: number;
  /** Batches already done before this session (resume). */
  alreadyDone?: number;
  /** Print a line every N batches of a job (and at each epoch's last batch). Default 10. */
  every?: number;
  write?: (line: string) => void;
  now?: () => number;
}

export class TrainingProgress {
  private readonly start: number;
  private readonly jobs = new Map<string, JobState>();
  private doneThisSession = 0;
  private readonly every: number;
  private readonly write: (line: string) => void;
  private readonly now: () => number;
  totalBatches: number;
  alreadyDone: number;

  constructor(opts: ProgressOptions) {
    this.now = opts.now ?? (() => performance.now() / 1000);
    this.start = this.now();
    this.totalBatches = opts.totalBatches;
    this.alreadyDone = opts.alreadyDone ?? 0;
    this.every = Math.max(1, opts.every ?? 10);
    this.write = opts.write ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** Declares a job's batch count (all its epochs still to run in this session). */
  startJob(job: string, totalBatches: number): void {
    this.jobs.set(job, { seconds: 0, batchesDone: 0, samplesDone: 0, totalBatches });
  }

  /** Overall fraction done and ETA (seconds) from this session's rate. */
  overall(): { fraction: number; etaSeconds: number } {
    const done = this.alreadyDone + this.doneThisSession;
    const elapsed = this.now() - this.start;
    const rate = elapsed > 0 ? this.doneThisSession / elapsed : 0;
    const left = Math.max(0, this.totalBatches - done);
    return { fraction: this.totalBatches > 0 ? done / this.totalBatches : 1, etaSeconds: rate > 0 ? left / rate : Number.NaN };
  }

  /** Records one batch; returns the line when one was printed. */
  batch(ev: BatchEvent): string | undefined {
    let st = this.jobs.get(ev.job);
    if (!st) {
      st = { seconds: 0, batchesDone: 0, samplesDone: 0, totalBatches: ev.batches * ev.epochs };
      this.jobs.set(ev.job, st);
    }
    st.batchesDone++;
    st.samplesDone += ev.samples;
    st.seconds += ev.seconds;
    this.doneThisSession++;
    if (ev.batch % this.every !== 0 && ev.batch !== ev.batches) return undefined;
    const sps = st.seconds > 0 ? st.samplesDone / st.seconds : 0;
    const jobRate = st.seconds > 0 ? st.batchesDone / st.seconds : 0;
    const jobLeft = Math.max(0, st.totalBatches - st.batchesDone);
    const all = this.overall();
    const line =
      `[${ev.job} ${ev.jobNumber}/${ev.jobs}] epoch ${ev.epoch}/${ev.epochs} batch ${ev.batch}/${ev.batches} ` +
      `loss ${ev.loss.toFixed(4)} lr ${ev.lr.toPrecision(4)} ${sps.toFixed(1)} samples/s | ` +
      `job ${Math.round((100 * st.batchesDone) / Math.max(1, st.totalBatches))}% ETA ${formatDuration(jobRate > 0 ? jobLeft / jobRate : Number.NaN)} | ` +
      `all ${Math.round(100 * all.fraction)}% ETA ${formatDuration(all.etaSeconds)}`;
    this.write(line);
    return line;
  }

  /** A free-form line (epoch summaries). */
  note(line: string): void {
    this.write(line);
  }
}
