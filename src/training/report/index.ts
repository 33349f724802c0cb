/** The training report (issue 5 item 6): run folder → HTML with PNG figures, and the per-cell inputs it reads. */
export { buildReport, REPORT_SCHEMA, REPORT_SECTIONS, type CellReport, type ReportOptions, type ReportResult, type ReportSection } from './build-report.js';
export {
  CellArtifactError,
  gradCamTiles,
  penultimateFeatures,
  pickByPair,
  readCellFeatures,
  readCellGradCam,
  writeCellFeatures,
  writeCellGradCam,
  type ArtifactSource,
  type CellFeatures,
  type CellGradCam,
  type GradCamTile,
  type SliceRef,
} from './cell-artifacts.js';
export { parsePredictionsCsv, readRunFolder, RunFolderError, type CellData, type RunData } from './run-folder.js';
export { embedTsne, type TsneEmbedding, type TsneOptions } from './tsne.js';
