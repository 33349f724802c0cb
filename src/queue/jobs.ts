/** Queue names and the typed payloads they carry. Payloads stay small: UIDs, counts and paths, never pixels. */
export const QueueName = {
  classify: 'classify',
  export: 'export',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export interface StackSummary {
  stackId: string;
  seriesInstanceUIDs: string[];
  slices: number;
  phases: number;
  problems: string[];
}

export interface ClassifyJobData {
  studyInstanceUID: string;
  /** Spool folder of the study (shared by SCP and workers). */
  studyDir: string;
  /** Instances on disk when the study went quiet. */
  instanceCount: number;
  stacks: StackSummary[];
  /** Series set aside (localisers, long-axis views…) with the reason. */
  setAside: Array<{ seriesInstanceUID: string; instances: number; code: string; reason: string }>;
  /** Epoch of the tracker state that made the study ready (ms since 1970): later arrivals make a new epoch. */
  epoch: number;
}

export interface ExportJobData {
  studyInstanceUID: string;
  stackId: string;
  epoch: number;
  /** The result JSON of the stack. */
  resultPath: string;
  /** Part 10 files to send (SR, SCs, KOS). */
  files: string[];
}

export const EXPORT_JOB_OPTIONS = {
  attempts: 8,
  backoff: { type: 'exponential' as const, delay: 5000 },
  removeOnComplete: { count: 1000 },
  removeOnFail: { count: 5000 },
};

export function exportJobId(studyInstanceUID: string, stackId: string, epoch: number): string {
  return `${studyInstanceUID}_${stackId}_${epoch}`;
}

/** Default job options: retried with exponential backoff; finished jobs kept for the API and bull-board. */
export const CLASSIFY_JOB_OPTIONS = {
  attempts: 4,
  backoff: { type: 'exponential' as const, delay: 2000 },
  removeOnComplete: { count: 1000 },
  removeOnFail: { count: 5000 },
};

/** Deterministic job id: one job per study and quiet epoch, whichever node noticed it first. */
export function classifyJobId(studyInstanceUID: string, epoch: number): string {
  return `${studyInstanceUID}_${epoch}`;
}
