/**
 * Orthanc REST client for the return path (notes/dicom-interop.md §7): `POST /instances` with the Part 10
 * bytes (Content-Type application/dicom, a Content-Length, no chunking), HTTP Basic auth, optional HTTPS
 * with a custom CA. Orthanc answers `{ ID, Status: 'Success' | 'AlreadyStored' | … }`; with deterministic
 * SOP Instance UIDs a retried export gets the same ID and `AlreadyStored` (or `Success` when Orthanc runs
 * with OverwriteInstances), never a duplicate. Every failure is thrown as an ExportError (errors.ts).
 */
import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance } from 'axios';
import { classifyExportFailure, ExportError } from './errors.js';

/** TLS settings for an HTTPS Orthanc (or a TLS reverse proxy in front of it). */
export interface OrthancTlsOptions {
  /** Trusted CA certificate(s), PEM; default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /**
   * Verify the server certificate. Turn off only for a test rig: it allows man-in-the-middle.
   * @defaultValue true
   */
  rejectUnauthorized?: boolean;
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Server name for SNI and certificate check when it differs from the URL's host. */
  servername?: string;
}

export interface OrthancRestOptions {
  /** Base URL of Orthanc's REST API, e.g. `https://pacs.example.org:8042` (a path prefix is kept). */
  url: string;
  /** HTTP Basic credentials: both or neither. */
  username?: string;
  password?: string;
  /**
   * Milliseconds for one request (connect, upload and answer).
   * @defaultValue 30000
   */
  timeoutMs?: number;
  /** HTTPS settings; used when the URL is https:. */
  tls?: OrthancTlsOptions;
}

/** Orthanc's answer to a stored instance. */
export interface StoredInstance {
  /** Orthanc's instance ID (a hash of the patient/study/series/SOP UIDs: stable across retries). */
  id: string;
  status: 'Success' | 'AlreadyStored';
  parentStudy?: string;
  parentSeries?: string;
  parentPatient?: string;
  path?: string;
}

export interface OrthancRestClient {
  /** The base URL (without credentials). */
  readonly url: string;
  /** Stores one Part 10 instance; throws ExportError (see errors.ts for which are retryable). */
  storeInstance(part10: Uint8Array): Promise<StoredInstance>;
  /** `GET /system`: Orthanc's name and version (a cheap reachability and credentials check). */
  system(): Promise<{ Name?: string; Version?: string; ApiVersion?: number; DicomAet?: string }>;
  /** Closes the keep-alive connections. Idempotent. */
  close(): void;
}

function checkOptions(opts: OrthancRestOptions): URL {
  if (!opts || typeof opts.url !== 'string') throw new TypeError('OrthancRestOptions.url is required');
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new TypeError(`OrthancRestOptions.url is not a URL: ${opts.url}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`OrthancRestOptions.url must be http: or https:, got ${url.protocol}`);
  if (url.username || url.password) throw new TypeError('OrthancRestOptions.url must not carry credentials: use username and password');
  if ((opts.username === undefined) !== (opts.password === undefined)) throw new TypeError('OrthancRestOptions.username and password go together');
  if (opts.timeoutMs !== undefined && !(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0)) {
    throw new TypeError(`OrthancRestOptions.timeoutMs must be > 0, got ${opts.timeoutMs}`);
  }
  if (opts.tls && url.protocol !== 'https:') throw new TypeError('OrthancRestOptions.tls is set but the URL is not https:');
  return url;
}

/** True when the bytes look like a DICOM Part 10 file (128-byte preamble, then "DICM"). */
export function isPart10(bytes: Uint8Array): boolean {
  return bytes.length > 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** Creates the client (an axios instance with keep-alive agents). */
export function createOrthancRestClient(opts: OrthancRestOptions): OrthancRestClient {
  const url = checkOptions(opts);
  const base = url.toString().replace(/\/+$/, '');
  const httpAgent = new http.Agent({ keepAlive: true });
  const httpsAgent = new https.Agent({
    keepAlive: true,
    ca: opts.tls?.ca,
    rejectUnauthorized: opts.tls?.rejectUnauthorized ?? true,
    cert: opts.tls?.cert,
    key: opts.tls?.key,
    servername: opts.tls?.servername,
  });
  const api: AxiosInstance = axios.create({
    baseURL: base,
    timeout: opts.timeoutMs ?? 30_000,
    auth: opts.username !== undefined ? { username: opts.username, password: opts.password! } : undefined,
    httpAgent,
    httpsAgent,
    maxBodyLength: Infinity,
    maxContentLength: Infinity,
    // Environment proxies (HTTP_PROXY) must not silently reroute PACS traffic.
    proxy: false,
  });
  let closed = false;

  const storeInstance = async (part10: Uint8Array): Promise<StoredInstance> => {
    if (closed) throw new ExportError('EXPORT_INVALID_INPUT', 'the Orthanc client is closed', { retryable: false });
    if (!(part10 instanceof Uint8Array) || !isPart10(part10)) {
      throw new ExportError('EXPORT_INVALID_INPUT', 'not a DICOM Part 10 file (no "DICM" at byte 128)', { retryable: false });
    }
    let data: unknown;
    try {
      const body = Buffer.from(part10.buffer, part10.byteOffset, part10.byteLength);
      const res = await api.post('/instances', body, {
        headers: { 'Content-Type': 'application/dicom', 'Content-Length': String(body.byteLength) },
        responseType: 'json',
      });
      data = res.data;
    } catch (err) {
      throw classifyExportFailure(err);
    }
    const d = (data ?? {}) as Record<string, unknown>;
    const status = d.Status;
    if (typeof d.ID !== 'string' || (status !== 'Success' && status !== 'AlreadyStored')) {
      // Orthanc answers 200 with Status 'Failure' or 'FilteredOut' (a Lua/plugin filter refused it).
      throw new ExportError('EXPORT_REJECTED', `Orthanc did not store the instance: ${JSON.stringify(data).slice(0, 300)}`, { retryable: false });
    }
    const out: StoredInstance = { id: d.ID, status };
    if (typeof d.ParentStudy === 'string') out.parentStudy = d.ParentStudy;
    if (typeof d.ParentSeries === 'string') out.parentSeries = d.ParentSeries;
    if (typeof d.ParentPatient === 'string') out.parentPatient = d.ParentPatient;
    if (typeof d.Path === 'string') out.path = d.Path;
    return out;
  };

  const system = async () => {
    try {
      return (await api.get('/system', { responseType: 'json' })).data;
    } catch (err) {
      throw classifyExportFailure(err);
    }
  };

  return {
    url: base,
    storeInstance,
    system,
    close() {
      if (closed) return;
      closed = true;
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
