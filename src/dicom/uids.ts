/** SOP class and transfer syntax UIDs used across the service. */
export const SopClass = {
  MRImageStorage: '1.2.840.10008.5.1.4.1.1.4',
  EnhancedMRImageStorage: '1.2.840.10008.5.1.4.1.1.4.1',
  SecondaryCaptureImageStorage: '1.2.840.10008.5.1.4.1.1.7',
  ComprehensiveSRStorage: '1.2.840.10008.5.1.4.1.1.88.33',
  KeyObjectSelectionDocumentStorage: '1.2.840.10008.5.1.4.1.1.88.59',
  Verification: '1.2.840.10008.1.1',
} as const;

export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  JpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  Jpeg2000Lossless: '1.2.840.10008.1.2.4.90',
  Jpeg2000: '1.2.840.10008.1.2.4.91',
  RleLossless: '1.2.840.10008.1.2.5',
} as const;

/** Storage SOP classes the SCP accepts: cine short-axis MR comes as one of these. */
export const ACCEPTED_SOP_CLASSES: readonly string[] = [SopClass.MRImageStorage, SopClass.EnhancedMRImageStorage];

/**
 * Transfer syntaxes we can decode with dcmjs-codecs, in order of preference when a peer proposes several.
 * JPEG baseline/extended (.4.50/.4.51) are deliberately absent: dcmjs-codecs cannot decode 12-bit .4.51.
 */
export const ACCEPTED_TRANSFER_SYNTAXES: readonly string[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.JpegLosslessSV1,
  TransferSyntax.JpegLsLossless,
  TransferSyntax.JpegLsNearLossless,
  TransferSyntax.Jpeg2000Lossless,
  TransferSyntax.Jpeg2000,
  TransferSyntax.RleLossless,
];

export const UNCOMPRESSED_TRANSFER_SYNTAXES: readonly string[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
];
