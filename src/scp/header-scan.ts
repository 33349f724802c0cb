/** The tag walker moved to src/dicom/header-scan.ts (shared with the worker's header and pixel reads). */
export * from '../dicom/header-scan.js';
