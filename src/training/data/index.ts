/** Training data: dataset specs and loaders, patient-level splits, sample building. */
export * from './types.js';
export { parseDatasetSpec, loadDataset, combinedLicense, DatasetSpecError, DATASET_KINDS, type DatasetSpecPart, type LoadDatasetOptions } from './spec.js';
export { loadAcdc, loadAcdcSubject, listAcdcSubjects, readNifti, parseInfoCfg, acdcLabelsBaseToApex, type AcdcSubject, type NiftiVolume } from './acdc.js';
export { loadPhantom, PHANTOM_LICENSE } from './phantom.js';
export { kFoldSplit, foldSets, subsetSubjects, shuffleInPlace, type SplitSubject } from './split.js';
export * from './samples.js';
