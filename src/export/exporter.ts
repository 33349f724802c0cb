import { readFile } from 'node:fs/promises';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { cStoreFiles } from './dimse-scu.js';
import { classifyExportFailure, isDimseSuccess } from './errors.js';
import { createOrthancRestClient, type OrthancRestClient } from './orthanc-rest.js';

/** Sends Part 10 files to the PACS; throws an ExportError (`retryable` says whether a retry can help). */
export interface Exporter {
  readonly target: string;
  send(files: readonly string[]): Promise<{ sent: number }>;
  close(): void;
}

/**
 * The exporter the config asks for: `rest` (Orthanc `POST /instances`) or `dimse` (C-STORE to ORTHANC_HOST:
 * ORTHANC_DICOM_PORT, called AE ORTHANC_AE_TITLE). Undefined for `none`.
 */
export function createExporter(config: Config, logger: Logger): Exporter | undefined {
  if (config.export === 'none') return undefined;
  if (config.export === 'rest') {
    if (!config.orthancUrl) throw new Error('SAX_RANGE_EXPORT=rest needs ORTHANC_URL');
    const client: OrthancRestClient = createOrthancRestClient({
      url: config.orthancUrl,
      username: config.orthancUsername,
      password: config.orthancPassword,
    });
    return {
      target: client.url,
      async send(files) {
        for (const f of files) await client.storeInstance(new Uint8Array(await readFile(f)));
        return { sent: files.length };
      },
      close: () => client.close(),
    };
  }
  const host = config.orthancHost;
  const port = config.orthancDicomPort;
  const calledAE = config.orthancAeTitle ?? 'ORTHANC';
  if (!host || !port) throw new Error('SAX_RANGE_EXPORT=dimse needs ORTHANC_HOST and ORTHANC_DICOM_PORT');
  return {
    target: `${calledAE}@${host}:${port}`,
    async send(files) {
      let outcomes;
      try {
        outcomes = await cStoreFiles({ host, port, callingAE: config.aeTitle, calledAE }, [...files]);
      } catch (err) {
        throw classifyExportFailure(err);
      }
      const bad = outcomes.find((o) => !isDimseSuccess(o.status));
      if (bad) {
        logger.warn({ status: bad.status, comment: bad.errorComment }, 'C-STORE refused');
        throw classifyExportFailure(bad);
      }
      return { sent: outcomes.length };
    },
    close: () => undefined,
  };
}
