/**
 * Writes a naturalized dataset (dcmjs keywords, nested sequences allowed) as a DICOM Part 10 file in
 * Explicit VR Little Endian, with dcmjs's `DicomDict` (PS3.10 §7: preamble, "DICM", group 0002).
 * dcmjs encodes every string as UTF-8, which is why every object we write declares ISO_IR 192.
 */
import dcmjs from 'dcmjs';
import { uidFromName } from '../dicom/uid.js';
import { SrInputError } from './errors.js';

const { DicomDict, DicomMetaDictionary, DicomMessage } = dcmjs.data;

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** Implementation Class UID of the files sax-range writes (PS3.7 D.3.3.2). */
export const IMPLEMENTATION_CLASS_UID = uidFromName('implementation/sax-range/1');
/** Implementation Version Name (SH, ≤ 16 characters). */
export const IMPLEMENTATION_VERSION_NAME = 'SAXRANGE_1';

/** Encodes `dataset` as Part 10. Throws SrInputError when SOPClassUID/SOPInstanceUID are missing. */
export function writePart10(dataset: Readonly<Record<string, unknown>>): Uint8Array {
  const sopClass = dataset.SOPClassUID;
  const sopInstance = dataset.SOPInstanceUID;
  if (typeof sopClass !== 'string' || typeof sopInstance !== 'string') {
    throw new SrInputError('dataset needs SOPClassUID and SOPInstanceUID to be written as Part 10');
  }
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClass,
    MediaStorageSOPInstanceUID: sopInstance,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  const buffer: ArrayBuffer = dict.write();
  return new Uint8Array(buffer);
}

/** Reads a Part 10 buffer back into a naturalized dataset (tests and checks). */
export function readPart10(part10: Uint8Array): { meta: Record<string, any>; dataset: Record<string, any> } {
  const ab = part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.byteLength);
  const dict = DicomMessage.readFile(ab);
  return {
    meta: DicomMetaDictionary.naturalizeDataset(dict.meta),
    dataset: DicomMetaDictionary.naturalizeDataset(dict.dict),
  };
}
