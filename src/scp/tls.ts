/**
 * DICOM TLS (PS3.15 Annex B, the BCP 195 profiles): when `tlsCertFile`/`tlsKeyFile` are set the DICOM port
 * speaks TLS only (TLS 1.2 or later, Node's default cipher list, which covers the BCP 195 suites DCMTK
 * proposes). With `tlsCaFile` client certificates are asked for and checked against it; with
 * `tlsRequireClientCert` a client without a valid one is refused during the handshake (before any DICOM byte).
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import type { Config } from '../config.js';

export type ScpTlsConfig = Partial<Pick<Config, 'tlsCertFile' | 'tlsKeyFile' | 'tlsCaFile' | 'tlsRequireClientCert'>>;

/** node:tls server options for the SCP, or undefined when TLS is off. Reads the files (checked by loadConfig). */
export function scpTlsOptions(c: ScpTlsConfig): TlsOptions | undefined {
  if (!c.tlsCertFile || !c.tlsKeyFile) return undefined;
  const ca = c.tlsCaFile ? readFileSync(c.tlsCaFile) : undefined;
  return {
    cert: readFileSync(c.tlsCertFile),
    key: readFileSync(c.tlsKeyFile),
    ca,
    minVersion: 'TLSv1.2',
    requestCert: ca !== undefined || c.tlsRequireClientCert === true,
    rejectUnauthorized: c.tlsRequireClientCert === true,
  };
}
