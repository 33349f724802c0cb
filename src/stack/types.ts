/** One image of a stack: an instance, or one frame of a multi-frame instance. */
export interface FrameRef {
  sopInstanceUID: string;
  seriesInstanceUID: string;
  path: string;
  /** 0-based frame of a multi-frame instance; undefined for single-frame instances. */
  frame?: number;
  triggerTime?: number;
  instanceNumber?: number;
}

/** One slice position of a stack with its frames in phase order. */
export interface StackSlice {
  /** Index in the stack's `slices` (ascending position along the normal). */
  index: number;
  /** mm along the stack normal: normal · ImagePositionPatient. */
  position: number;
  imagePositionPatient: number[];
  sliceLocation?: number;
  /** Phase order (TriggerTime, else InstanceNumber). */
  frames: FrameRef[];
}

/** Machine-readable codes of problems found in a stack (the stack is still produced). */
export type StackProblemCode =
  | 'missing-slice'
  | 'uneven-spacing'
  | 'uneven-phase-count'
  | 'duplicate-position'
  | 'duplicate-phase'
  | 'no-frame-of-reference'
  | 'no-trigger-time';

/** A problem found while assembling a stack: reported on the stack, never hidden. */
export interface StackProblem {
  code: StackProblemCode;
  /** Human-readable, one line. */
  message: string;
  /** Slices concerned (indices into `slices`). */
  sliceIndices?: number[];
  seriesInstanceUIDs?: string[];
  details?: Record<string, unknown>;
}

/** How the phases of a stack were ordered. */
export type PhaseOrderMethod = 'trigger-time' | 'instance-number' | 'frame-order';

export interface CineStack {
  /** Deterministic: hash of study, FrameOfReferenceUID, orientation and the first series UID. */
  stackId: string;
  studyInstanceUID: string;
  frameOfReferenceUID?: string;
  /** Series whose frames are in the stack (sorted by SeriesNumber, then UID). */
  seriesInstanceUIDs: string[];
  /** Six direction cosines (row, column) as received (of the first frame). */
  imageOrientationPatient: number[];
  /** Unit normal rowCos × colCos: positions are measured along it. */
  normal: number[];
  rows: number;
  columns: number;
  pixelSpacing?: number[];
  /** Nominal spacing between neighbouring slices (mm; 0 for a single slice). */
  sliceSpacing: number;
  /** Ascending position along the normal. */
  slices: StackSlice[];
  /** Phases per slice (the minimum over slices when they differ: see problems). */
  phases: number;
  /** How frames were put in phase order within each slice. */
  phaseOrder: PhaseOrderMethod;
  problems: StackProblem[];
}

/** Machine-readable reasons why images are not part of any stack. */
export type SetAsideCode =
  | 'not-mr'
  | 'missing-geometry'
  | 'invalid-geometry'
  | 'localizer'
  | 'single-image'
  | 'not-cine'
  | 'long-axis'
  | 'superseded';

/** Images not used, with the reason: never dropped silently. One entry per series and reason. */
export interface SetAside {
  seriesInstanceUID: string;
  sopInstanceUIDs: string[];
  code: SetAsideCode;
  reason: string;
}

export interface AssemblyResult {
  stacks: CineStack[];
  setAside: SetAside[];
}

/** Slice order from the apex to the base, as decided from the geometry alone. */
export interface SliceOrder {
  /** Slice indices (into `stack.slices`), apex → base. */
  order: number[];
  method: 'geometry';
  /** |cos| of the angle between the stack normal and the expected LV long axis (0..1). */
  confidence: number;
  /** Signed cosine: > 0 means larger positions are more apical. */
  cosine: number;
  /** True when |cos| < 0.3: the geometry does not tell apex from base reliably. */
  ambiguous: boolean;
  message?: string;
}
