import { createHash } from 'node:crypto';

/**
 * Orthanc's identifier of a DICOM resource: the SHA-1 of the identifying tags joined with `|`, written as
 * five groups of eight hex digits (Orthanc Book, "Orthanc identifiers"): patient = PatientID, study =
 * PatientID|StudyInstanceUID, series = …|SeriesInstanceUID, instance = …|SOPInstanceUID. Lets the viewer
 * link to Orthanc Explorer without asking Orthanc (and without giving the browser Orthanc's credentials).
 */
export function orthancId(...parts: readonly string[]): string {
  const hex = createHash('sha1').update(parts.join('|')).digest('hex');
  return hex.match(/.{8}/g)!.join('-');
}

/** Orthanc Explorer's page of a study or an instance (`<base>/app/explorer.html#study?uuid=…`). */
export function orthancExplorerUrl(base: string, level: 'study' | 'series' | 'instance', id: string): string {
  return `${base.replace(/\/+$/, '')}/app/explorer.html#${level}?uuid=${id}`;
}

/**
 * The Orthanc base URL as a browser may be shown it: http(s) only, without credentials, query or fragment.
 * Undefined when there is none or it cannot be parsed.
 */
export function publicOrthancUrl(url: string | undefined): string | undefined {
  if (!url) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/+$/, '');
}
