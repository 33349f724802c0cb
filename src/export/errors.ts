/**
 * Export failures and whether retrying can help. One function, `classifyExportFailure`, turns whatever an
 * export attempt produced (an axios/Node network error, an HTTP status, a DIMSE status, an
 * AssociationError from dimse-scu.ts) into an `ExportError` with a stable `code` and `retryable`. The
 * queue turns `retryable === false` into a permanent failure (BullMQ UnrecoverableError).
 *
 * Retryable: the peer is down, busy or slow (connection refused/reset, timeouts, HTTP 408/425/429/5xx,
 * DIMSE 0xA7xx "Out of Resources", 0x0110 processing failure, 0x0210/0x0213). Permanent: the peer
 * understood and refused (HTTP 4xx: 400 bad file, 401/403 credentials, 413 too large …; DIMSE 0x0122
 * SOP class not supported, 0x0124 not authorized, 0xA9xx data set does not match SOP class, 0xCxxx cannot
 * understand), TLS/certificate problems (configuration), and anything unrecognised.
 */

export type ExportErrorCode =
  /** No connection or the connection broke (ECONNREFUSED, ECONNRESET, EHOSTUNREACH, DNS …). */
  | 'EXPORT_NETWORK'
  /** The peer did not answer in time. */
  | 'EXPORT_TIMEOUT'
  /** HTTP 429/503: the peer asks us to come back later. */
  | 'EXPORT_BUSY'
  /** HTTP 5xx other than 503. */
  | 'EXPORT_SERVER_ERROR'
  /** HTTP 401/403: wrong or missing credentials. */
  | 'EXPORT_AUTH'
  /** HTTP 4xx other than 401/403/408/425/429, or Orthanc answered Failure/FilteredOut: the object was refused. */
  | 'EXPORT_REJECTED'
  /** TLS handshake or certificate verification failed. */
  | 'EXPORT_TLS'
  /** DIMSE 0xA7xx: Refused, Out of Resources. */
  | 'EXPORT_DIMSE_OUT_OF_RESOURCES'
  /** DIMSE 0x0111: the peer already has an instance with this SOP Instance UID. */
  | 'EXPORT_DIMSE_DUPLICATE'
  /** Any other DIMSE failure status (see `dimseStatus`). */
  | 'EXPORT_DIMSE_FAILURE'
  /** The association was rejected, aborted or could not be set up. */
  | 'EXPORT_ASSOCIATION'
  /** The input to the export was invalid (e.g. not a Part 10 file): retrying cannot help. */
  | 'EXPORT_INVALID_INPUT'
  /** Not recognised: treated as permanent so that a bug does not retry forever. */
  | 'EXPORT_UNKNOWN';

export interface ExportErrorDetails {
  retryable: boolean;
  httpStatus?: number;
  dimseStatus?: number;
  cause?: unknown;
}

/** A failed export: a stable `code`, whether a retry can help, and the HTTP or DIMSE status when there is one. */
export class ExportError extends Error {
  readonly code: ExportErrorCode;
  readonly retryable: boolean;
  readonly httpStatus?: number;
  readonly dimseStatus?: number;
  override readonly cause?: unknown;

  constructor(code: ExportErrorCode, message: string, details: ExportErrorDetails) {
    super(message);
    this.name = 'ExportError';
    Object.setPrototypeOf(this, new.target.prototype);
    this.code = code;
    this.retryable = details.retryable;
    if (details.httpStatus !== undefined) this.httpStatus = details.httpStatus;
    if (details.dimseStatus !== undefined) this.dimseStatus = details.dimseStatus;
    if (details.cause !== undefined) this.cause = details.cause;
  }
}

/** DIMSE statuses that are not failures: Success, the C-STORE warnings (PS3.4 B.2.3) and Pending. */
export function isDimseSuccess(status: number): boolean {
  return (
    status === 0x0000 ||
    status === 0x0001 ||
    status === 0x0107 ||
    status === 0x0116 ||
    status === 0xb000 ||
    status === 0xb006 ||
    status === 0xb007 ||
    (status & 0xff00) === 0xff00
  );
}

const hex = (s: number) => `0x${s.toString(16).toUpperCase().padStart(4, '0')}`;

/** Classifies a DIMSE failure status (PS3.7 Annex C; C-STORE statuses PS3.4 Table B.2-1). */
function classifyDimse(status: number, comment?: string): ExportError {
  const suffix = comment ? `: ${comment}` : '';
  const mk = (code: ExportErrorCode, what: string, retryable: boolean) =>
    new ExportError(code, `DIMSE status ${hex(status)} (${what})${suffix}`, { retryable, dimseStatus: status });
  if ((status & 0xff00) === 0xa700) return mk('EXPORT_DIMSE_OUT_OF_RESOURCES', 'Refused: Out of Resources', true);
  if ((status & 0xff00) === 0xa900) return mk('EXPORT_DIMSE_FAILURE', 'Error: Data Set Does Not Match SOP Class', false);
  if ((status & 0xf000) === 0xc000) return mk('EXPORT_DIMSE_FAILURE', 'Error: Cannot Understand', false);
  switch (status) {
    case 0x0110:
      return mk('EXPORT_DIMSE_FAILURE', 'Processing Failure', true);
    case 0x0111:
      return mk('EXPORT_DIMSE_DUPLICATE', 'Duplicate SOP Instance', false);
    case 0x0122:
      return mk('EXPORT_DIMSE_FAILURE', 'Refused: SOP Class Not Supported', false);
    case 0x0124:
      return mk('EXPORT_DIMSE_FAILURE', 'Refused: Not Authorized', false);
    case 0x0210:
      return mk('EXPORT_DIMSE_FAILURE', 'Duplicate Invocation', true);
    case 0x0213:
      return mk('EXPORT_DIMSE_OUT_OF_RESOURCES', 'Resource Limitation', true);
    case 0xfe00:
      return mk('EXPORT_DIMSE_FAILURE', 'Cancel', true);
    default:
      return mk('EXPORT_DIMSE_FAILURE', 'Failure', false);
  }
}

/** Node/undici/axios error codes of a connection that failed or broke: retryable. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ECONNABORTED', 'ESOCKETTIMEDOUT', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** TLS: a configuration problem (wrong CA, expired or mismatched certificate, HTTPS to an HTTP port): permanent. */
const TLS_CODE_RE = /^(CERT_|ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_|EPROTO$|HOSTNAME_MISMATCH$)/;

/** Classifies an HTTP error status. */
export function classifyHttpStatus(status: number, detail?: string): ExportError {
  const suffix = detail ? `: ${detail}` : '';
  const mk = (code: ExportErrorCode, retryable: boolean) => new ExportError(code, `HTTP ${status}${suffix}`, { retryable, httpStatus: status });
  if (status === 429 || status === 503) return mk('EXPORT_BUSY', true);
  if (status === 408 || status === 425 || status === 504) return mk('EXPORT_TIMEOUT', true);
  if (status >= 500) return mk('EXPORT_SERVER_ERROR', true);
  if (status === 401 || status === 403) return mk('EXPORT_AUTH', false);
  if (status >= 400) return mk('EXPORT_REJECTED', false);
  return mk('EXPORT_UNKNOWN', false);
}

/** Orthanc's error body (`{ OrthancError, Message, Details }`) as one line, when there is one. */
function orthancDetail(data: unknown): string | undefined {
  if (!data || typeof data !== 'object') return typeof data === 'string' && data.length > 0 && data.length < 500 ? data : undefined;
  const d = data as Record<string, unknown>;
  const parts = [d.OrthancError, d.Message, d.Details].filter((x): x is string => typeof x === 'string' && x.length > 0);
  return parts.length > 0 ? [...new Set(parts)].join(' – ') : undefined;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

/**
 * Turns any export failure into an ExportError:
 * - an ExportError: returned as it is;
 * - a number: a DIMSE status (throws RangeError for Success/Warning/Pending, which are not failures);
 * - `{ status, errorComment? }` (a dimse-scu.ts StoreOutcome): its DIMSE status;
 * - an AssociationError (dimse-scu.ts): EXPORT_ASSOCIATION with its own `retryable`;
 * - an axios error with a response: its HTTP status (Orthanc's error text in the message);
 * - an axios/Node error without a response: by its `code` (network, timeout, TLS);
 * - anything else: EXPORT_UNKNOWN, permanent.
 */
export function classifyExportFailure(failure: unknown): ExportError {
  if (failure instanceof ExportError) return failure;
  if (typeof failure === 'number') {
    if (!Number.isInteger(failure) || failure < 0 || failure > 0xffff) throw new RangeError(`not a DIMSE status: ${failure}`);
    if (isDimseSuccess(failure)) throw new RangeError(`DIMSE status ${hex(failure)} is not a failure`);
    return classifyDimse(failure);
  }
  if (!isObject(failure)) return new ExportError('EXPORT_UNKNOWN', `export failed: ${String(failure)}`, { retryable: false, cause: failure });

  // A StoreOutcome-like object: { status: number, errorComment? } (no Error).
  if (!(failure instanceof Error) && typeof failure.status === 'number') {
    const status = failure.status;
    if (isDimseSuccess(status)) throw new RangeError(`DIMSE status ${hex(status)} is not a failure`);
    const e = classifyDimse(status, typeof failure.errorComment === 'string' ? failure.errorComment : undefined);
    return e;
  }

  const err = failure as Error & Record<string, unknown>;
  const message = typeof err.message === 'string' ? err.message : String(err);

  // dimse-scu.ts AssociationError (matched by name too: errors cross worker boundaries).
  if (err.name === 'AssociationError' && typeof err.retryable === 'boolean') {
    return new ExportError('EXPORT_ASSOCIATION', message, { retryable: err.retryable, cause: failure });
  }

  // An HTTP response (axios: err.response.status; our own wrappers may set httpStatus).
  const response = isObject(err.response) ? err.response : undefined;
  const httpStatus = typeof response?.status === 'number' ? response.status : typeof err.httpStatus === 'number' ? err.httpStatus : undefined;
  if (httpStatus !== undefined) {
    const e = classifyHttpStatus(httpStatus, orthancDetail(response?.data) ?? (response ? undefined : message));
    return new ExportError(e.code, e.message, { retryable: e.retryable, httpStatus, cause: failure });
  }

  // No response: the connection. axios keeps the Node code on err.code (and on err.cause for some).
  const codes = [err.code, isObject(err.cause) ? err.cause.code : undefined].filter((c): c is string => typeof c === 'string');
  for (const code of codes) {
    if (TLS_CODE_RE.test(code)) return new ExportError('EXPORT_TLS', `TLS failure (${code}): ${message}`, { retryable: false, cause: failure });
    if (TIMEOUT_CODES.has(code)) return new ExportError('EXPORT_TIMEOUT', `timed out (${code}): ${message}`, { retryable: true, cause: failure });
    if (NETWORK_CODES.has(code)) return new ExportError('EXPORT_NETWORK', `network failure (${code}): ${message}`, { retryable: true, cause: failure });
  }
  if (err.name === 'AbortError' || err.name === 'TimeoutError' || /timeout/i.test(message)) {
    return new ExportError('EXPORT_TIMEOUT', `timed out: ${message}`, { retryable: true, cause: failure });
  }
  return new ExportError('EXPORT_UNKNOWN', `export failed: ${message}`, { retryable: false, cause: failure });
}
