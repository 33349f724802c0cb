export * from './types.js';
export { assembleStacks, type AssembleOptions } from './assemble.js';
export { apexToBase, APEX_DIRECTION, AMBIGUOUS_COSINE, orientationFrame } from './geometry.js';
export {
  bloodPoolAreas,
  chooseEdPhase,
  chooseEsPhase,
  midVentricularSlices,
  phaseTriggerTime,
  type EsDims,
  type EsOptions,
  type PhaseChoice,
  type PhaseMethod,
  type SliceBloodPool,
} from './phases.js';
