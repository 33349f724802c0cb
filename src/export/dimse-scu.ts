import dimse from 'dcmjs-dimse';

const { Client, requests } = dimse;

export interface ScuTarget {
  host: string;
  port: number;
  callingAE: string;
  calledAE: string;
  /** Milliseconds; applies to connect, association and each PDU. */
  timeoutMs?: number;
}

export interface StoreOutcome {
  path: string;
  status: number;
  errorComment?: string;
}

/** Error raised when the association itself fails (refused, rejected, aborted, network). */
export class AssociationError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'AssociationError';
  }
}

/**
 * C-STORE SCU over one association (dcmjs-dimse Client, wrapped once into a promise). Nagle is turned off on
 * the socket: with it on, every C-STORE waits for the peer's delayed ACK (~40 ms).
 * Resolves with one outcome per file; rejects only when the association fails.
 */
export function cStoreFiles(target: ScuTarget, paths: string[]): Promise<StoreOutcome[]> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const outcomes: StoreOutcome[] = [];
    let failed: AssociationError | undefined;
    for (const path of paths) {
      const req = new requests.CStoreRequest(path);
      req.on('response', (rsp: any) => {
        outcomes.push({ path, status: rsp.getStatus(), errorComment: rsp.getErrorComment?.() || undefined });
      });
      client.addRequest(req);
    }
    client.on('connected', () => {
      (client as any).network?.socket?.setNoDelay?.(true);
    });
    client.on('associationRejected', (result: any) => {
      failed = new AssociationError(`association rejected: result ${result?.result} reason ${result?.reason}`, false);
    });
    client.on('networkError', (err: Error) => {
      failed = new AssociationError(`network error: ${err.message}`, true);
    });
    client.on('closed', () => {
      if (failed) reject(failed);
      else if (outcomes.length < paths.length)
        reject(new AssociationError(`association closed after ${outcomes.length} of ${paths.length} responses`, true));
      else resolve(outcomes);
    });
    const t = target.timeoutMs ?? 30_000;
    client.send(target.host, target.port, target.callingAE, target.calledAE, {
      connectTimeout: t,
      associationTimeout: t,
      pduTimeout: t,
    });
  });
}

