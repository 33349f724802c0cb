import type { ModelRef, PhaseKey, Result } from '../inference/result.js';
import type { SliceLabel } from '../inference/decode.js';

/** Who set a label: the classifier (pre-label from a result document) or a person in the labeller. */
export type LabelSource = 'model' | 'human';

export const LABEL_SOURCES = ['model', 'human'] as const satisfies readonly LabelSource[];
export const LABEL_VALUES = ['OAP', 'IN', 'OBS'] as const satisfies readonly SliceLabel[];
export const PHASES = ['ED', 'ES'] as const satisfies readonly PhaseKey[];

/**
 * One slice label as given to `saveLabels`. `index` is the slice's `index` in the result document (its index
 * in the stack, ascending position along the normal), not its position in the apex → base list.
 */
export interface LabelInput {
  readonly stackId: string;
  readonly phase: PhaseKey;
  readonly index: number;
  readonly sopInstanceUID: string;
  readonly label: SliceLabel;
  /** @defaultValue 'human' */
  readonly source?: LabelSource;
}

/** A stored label; unique per (studyInstanceUID, stackId, phase, index). */
export interface LabelRecord {
  readonly studyInstanceUID: string;
  readonly stackId: string;
  readonly phase: PhaseKey;
  readonly index: number;
  readonly sopInstanceUID: string;
  readonly label: SliceLabel;
  readonly source: LabelSource;
  /** ISO 8601, UTC. */
  readonly updatedAt: string;
}

/** A stored result document with when it was saved and by which model. */
export interface StoredResult {
  readonly studyInstanceUID: string;
  readonly stackId: string;
  /** ISO 8601, UTC. */
  readonly processedAt: string;
  readonly model: ModelRef;
  readonly document: Result;
}

/** The per-phase part of a stack summary: the chosen frame and the IN range (positions apex → base). */
export interface PhaseSummary {
  readonly phaseIndex: number;
  readonly inRange: Result['phases']['ED']['inRange'];
}

/** What a study list shows of one classified stack (derived from its result document). */
export interface StackSummary {
  readonly stackId: string;
  readonly processedAt: string;
  readonly model: ModelRef;
  readonly slices: number;
  readonly ED: PhaseSummary;
  readonly ES: PhaseSummary;
}

/** One study with results in the database. */
export interface StudySummary {
  readonly studyInstanceUID: string;
  /** Latest processedAt of its stacks (ISO 8601). */
  readonly processedAt: string;
  readonly stacks: readonly StackSummary[];
  /** Number of human-confirmed labels. */
  readonly humanLabels: number;
}

export interface ListStudiesOptions {
  /** Only these studies (limit and offset then apply within them). */
  readonly studyInstanceUIDs?: readonly string[];
  /** @defaultValue 50 */
  readonly limit?: number;
  /** @defaultValue 0 */
  readonly offset?: number;
}

export interface LabelFilter {
  /** Only this study. */
  readonly studyInstanceUID?: string;
  /** Only this source (the CSV export asks for 'human'). */
  readonly source?: LabelSource;
}

/**
 * The typed persistence layer (results and labels). Two drivers implement it: embedded SQLite (default)
 * and PostgreSQL (`DATABASE_URL`). Every method is async so both fit.
 */
export interface Db {
  /** 'sqlite' or 'postgres'. */
  readonly driver: DbDriverName;
  /**
   * Upserts the result of one stack (keyed by study and stackId; a re-run replaces it) and, in the same
   * transaction, the model's label of every ED/ES slice with source 'model'. A human label is never
   * overwritten by a model label.
   */
  saveResult(doc: Result, opts?: { processedAt?: Date }): Promise<StoredResult>;
  /** Studies with results, latest processedAt first. */
  listStudies(opts?: ListStudiesOptions): Promise<StudySummary[]>;
  /** Every study with results and its latest processedAt (cheap: no documents), latest first. */
  listStudyTimes(): Promise<Array<{ studyInstanceUID: string; processedAt: string }>>;
  /** Number of studies with results. */
  countStudies(): Promise<number>;
  /** The stored results of a study, by stackId. */
  getResults(studyInstanceUID: string): Promise<StoredResult[]>;
  /** Labels of a study, ordered by stackId, phase, index. */
  getLabels(studyInstanceUID: string): Promise<LabelRecord[]>;
  /** Upserts labels in one transaction; returns the saved records. */
  saveLabels(studyInstanceUID: string, labels: readonly LabelInput[], opts?: { now?: Date }): Promise<LabelRecord[]>;
  /** Labels of every study (or one), ordered by study, stackId, phase, index. */
  exportLabels(filter?: LabelFilter): Promise<LabelRecord[]>;
  /** Closes the connection(s). Idempotent. */
  close(): Promise<void>;
}

export type DbDriverName = 'sqlite' | 'postgres';
