/**
 * The DICOM SCP: C-ECHO and C-STORE over dcmjs-dimse, streaming every instance into the spool.
 *
 * Per C-STORE: the PDV values are kept in memory behind a Part 10 header when the spool has a journal and the
 * instance is small (≤ 2 MiB), else they go straight to a temp file (the dataset is byte-identical to what was
 * sent either way); when the last fragment arrives the header is scanned (own tag walker, dcmjs as fallback),
 * validated, committed durably (Spool.commitBuffers: one journal sync; Spool.commit: fsync, rename, directory
 * fsync), handed to `onStored`, and only then answered Success. C-STORE-RQ commands and their data take a fast path (pdu-reader.ts) in front of
 * dcmjs-dimse, which keeps association handling, C-ECHO and anything unusual.
 *
 * Statuses (policy.ts StoreStatus), always with an ErrorComment; the association and the server stay up:
 *   0x0000 stored (committed and registered by onStored)
 *   0x0122 SOP class not supported, or not the one negotiated on the presentation context
 *   0xA700 out of resources: spool write/commit failed (ENOSPC, EIO…), instance over maxInstanceBytes,
 *          shutting down, or onStored failed (file kept, see below)
 *   0xA900 dataset does not match SOP class: SOP Class UID differs from the command; SOP Instance / Study /
 *          Series UID, Rows/Columns, Pixel Data or SamplesPerPixel/BitsAllocated missing
 *   0xC000 cannot understand: unparseable or truncated dataset, SOP Instance UID differs from the command,
 *          invalid UID syntax, Pixel Data shorter than Rows×Columns×Samples×Bits/8×Frames (native syntaxes),
 *          malformed encapsulated Pixel Data (compressed syntaxes)
 * Associations: rejected (A-ASSOCIATE-RJ) when the called AE is not ours (permanent, "called AE not
 * recognized"), the calling AE is not allowed (permanent, "calling AE not recognized"), no presentation context
 * is acceptable (permanent, no reason), maxAssociations are open or the receiver is closing (transient, local
 * limit exceeded).
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import dimse from 'dcmjs-dimse';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { associations, instancesReceived } from '../metrics.js';
import { InvalidInstanceError, metaFromDataset, parseHeader, type InstanceMeta } from '../dicom/meta.js';
import { ACCEPTED_SOP_CLASSES } from '../dicom/uids.js';
import type { Spool } from '../spool/spool.js';
import { checkEncapsulated, MalformedDataset, NeedMoreData, scanHeader, type HeaderScan } from './header-scan.js';
import { buildFileMetaHeader } from './part10.js';
import {
  checkAeTitles,
  errorComment,
  expectedPixelBytes,
  isExplicitVr,
  isNativeSyntax,
  limitRejection,
  negotiateContext,
  noContextRejection,
  normaliseAe,
  PcResult,
  StoreStatus,
} from './policy.js';
import { encodeStoreResponse, parseStoreCommand, PduReader, type StoreCommand } from './pdu-reader.js';
import { JobSink, StoreJob, TempFiles } from './store-job.js';
import { scpTlsOptions, type ScpTlsConfig } from './tls.js';

type DimseAssociation = InstanceType<typeof dimse.association.Association>;
type DimsePresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type DimseCStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type DimseCStoreResponse = InstanceType<typeof dimse.responses.CStoreResponse>;
type DimseCEchoRequest = InstanceType<typeof dimse.requests.CEchoRequest>;
type DimseCEchoResponse = InstanceType<typeof dimse.responses.CEchoResponse>;

export interface ReceiverOptions {
  /** With tlsCertFile/tlsKeyFile the port speaks DICOM TLS only (see tls.ts). */
  config: Pick<Config, 'aeTitle' | 'dicomPort' | 'allowedAEs' | 'maxInstanceBytes' | 'maxAssociations' | 'maxPduLength'> & ScpTlsConfig;
  spool: Spool;
  logger: Logger;
  /** Interface to bind; default all interfaces. */
  host?: string;
  /**
   * Called after an instance is durably committed and BEFORE Success is answered. If it throws (or rejects),
   * the store is answered 0xA700 (out of resources) so that the sender retries, and the committed file is KEPT:
   * a retry replaces it (same SOP Instance UID → same path), and deleting it could race with that retry.
   * Whoever consumes the spool must therefore tolerate a file that onStored never saw (e.g. rescan at start-up).
   */
  onStored?: (metas: InstanceMeta[], info: { callingAE: string; bytes: number }) => Promise<void>;
  /**
   * Receive C-STOREs through the PduReader fast path (default true). false leaves every PDU to dcmjs-dimse's own
   * parser (about 2× slower, same results): a switch for diagnosing a peer, and the bench's baseline.
   */
  fastPath?: boolean;
  /** dcmjs-dimse network timeouts (ms); defaults: connect 3 min idle, association 1 min, PDU 1 min. */
  timeouts?: { connectTimeout?: number; associationTimeout?: number; pduTimeout?: number };
}

export interface ReceiverStats {
  /** Associations accepted since start. */
  associations: number;
  /** Associations open now. */
  active: number;
  /** Instances stored (answered Success). */
  stored: number;
  /** C-STOREs answered with a failure status. */
  failed: number;
  /** Associations aborted for a protocol violation (bad PDU type or length, PDU over the announced maximum…). */
  protocolErrors: number;
}

type Answer = (status: number, comment?: string) => void;

interface Outcome {
  status: number;
  comment?: string;
  metas?: InstanceMeta[];
}

class StoreFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'StoreFailure';
  }
}

const fail = (status: number, message: string): never => {
  throw new StoreFailure(status, message);
};

/** How long an aborted association's socket stays half-closed for the peer to read the A-ABORT. */
const ABORT_GRACE_MS = 2000;

/** VRs Pixel Data may have (PS3.5 §8.2, plus UN from senders that lost the VR). */
const PIXEL_DATA_VRS = new Set(['OB', 'OW', 'UN']);

/** Largest header prefix read back from the temp file for the scan (a multi-frame header can be MBs). */
const MAX_HEADER_READ = 256 * 1024 * 1024;

interface Connection {
  socket: Socket;
  scp: { sendAbort(source?: number, reason?: number): void };
  accepted: boolean;
  callingAE: string;
  jobs: Set<StoreJob>;
  /** Whether the PduReader fast path is in place (see pdu-reader.ts). */
  fastPath: boolean;
}

export class DicomReceiver {
  readonly stats: ReceiverStats = { associations: 0, active: 0, stored: 0, failed: 0, protocolErrors: 0 };

  private readonly opts: ReceiverOptions;
  private readonly log: Logger;
  private server: NetServer | undefined;
  private readonly connections = new Set<Connection>();
  /** Stores whose command arrived and that are not answered yet. */
  private readonly inFlight = new Map<StoreJob, Promise<void>>();
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Temp files opened one ahead (see store-job.ts). */
  private readonly temps: TempFiles;
  private warnedNoFastPath = false;

  constructor(opts: ReceiverOptions) {
    this.opts = opts;
    // The composition root may already pass a child logger with a component binding.
    this.log = 'component' in (opts.logger.bindings?.() ?? {}) ? opts.logger : opts.logger.child({ component: 'scp' });
    this.temps = new TempFiles(() => opts.spool.tmpPath());
    // dcmjs-dimse logs every PDU at INFO on the console: keep only its errors.
    dimse.log.setLevel('error');
    // Our announced maximum receive PDU: dcmjs-dimse accepts min(association value, implementation maximum).
    if (dimse.Implementation.getMaxPduLength() < opts.config.maxPduLength) dimse.Implementation.setMaxPduLength(opts.config.maxPduLength);
  }

  /** Starts listening; resolves with the bound port (useful with dicomPort 0). */
  listen(): Promise<number> {
    if (this.server) throw new Error('DicomReceiver.listen() called twice');
    const ScpClass = makeScpClass(this);
    const tls = scpTlsOptions(this.opts.config);
    let server: NetServer;
    if (tls) {
      // TLS: the association starts once the handshake succeeded; a client refused there never reaches dcmjs-dimse.
      const tlsServer = createTlsServer({ ...tls, noDelay: true } as typeof tls, (socket: TLSSocket) => this.onConnection(socket, ScpClass));
      tlsServer.on('tlsClientError', (err, socket) => {
        this.log.warn({ remote: `${socket.remoteAddress}:${socket.remotePort}`, error: err.message }, 'DICOM TLS handshake failed; connection refused');
        socket.destroy();
      });
      server = tlsServer;
    } else {
      server = createServer({ noDelay: true }, (socket) => this.onConnection(socket, ScpClass));
    }
    // Connections beyond the association limit are rejected at A-ASSOCIATE time (with a reason); this only
    // bounds sockets that never associate.
    server.maxConnections = this.opts.config.maxAssociations * 2 + 8;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.config.dicomPort, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error({ err }, 'DICOM listener error'));
        const addr = server.address();
        const port = typeof addr === 'object' && addr ? addr.port : this.opts.config.dicomPort;
        this.log.info(
          { port, host: this.opts.host ?? '*', aeTitle: this.opts.config.aeTitle, tls: tls ? { clientCert: tls.rejectUnauthorized ? 'required' : tls.requestCert ? 'optional' : 'no' } : false },
          'DICOM SCP listening',
        );
        this.temps.warm();
        resolve(port);
      });
    });
  }

  /**
   * Graceful shutdown: stop accepting connections (and associations), refuse new C-STOREs (0xA700), wait for the
   * stores in flight to be answered (at most `timeoutMs`, default 30 s), give peers `graceMs` (default 2 s) to
   * release, then abort the remaining associations and close their sockets.
   */
  close(opts: { timeoutMs?: number; graceMs?: number } = {}): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = (async () => {
      const server = this.server;
      const serverClosed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
      // Wait until no store is in flight (a store still receiving becomes one being committed: loop).
      const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
      let timedOut = false;
      while (this.inFlight.size > 0) {
        const left = deadline - Date.now();
        if (left <= 0) {
          timedOut = true;
          break;
        }
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.allSettled([...this.inFlight.values()]), new Promise<void>((r) => (timer = setTimeout(r, left)))]);
        clearTimeout(timer);
      }
      if (timedOut) this.log.warn({ pending: this.inFlight.size }, 'DICOM SCP close: stores still in flight after timeout; aborting');
      // Give peers that got their last response a moment to release on their own, then abort the rest.
      const gone = [...this.connections].map((conn) => new Promise<void>((r) => (conn.socket.destroyed ? r() : conn.socket.once('close', () => r()))));
      const graceMs = timedOut ? 0 : (opts.graceMs ?? 2000);
      await Promise.race([Promise.all(gone), new Promise<void>((r) => setTimeout(r, graceMs).unref())]);
      for (const conn of this.connections) {
        try {
          if (conn.accepted && !conn.socket.destroyed) conn.scp.sendAbort(0, 0);
        } catch {
          // best effort
        }
        conn.socket.end();
        setTimeout(() => conn.socket.destroy(), 1000).unref();
      }
      await Promise.all(gone);
      await serverClosed;
      await this.temps.close((p) => this.opts.spool.discard(p));
      this.log.info({ ...this.stats }, 'DICOM SCP closed');
    })();
    return this.closed;
  }

  // -------------------------------------------------------------------------------------------------------
  // Called by the Scp instances
  // -------------------------------------------------------------------------------------------------------

  /** @internal */
  onConnection(socket: Socket, ScpClass: ReturnType<typeof makeScpClass>): void {
    socket.setNoDelay(true);
    if (this.closing) {
      socket.destroy();
      return;
    }
    try {
      new ScpClass(socket, this.opts.timeouts ?? {});
    } catch (err) {
      this.log.error({ err }, 'cannot set up a DICOM connection');
      socket.destroy();
    }
  }

  /** @internal The Maximum Length announced in our A-ASSOCIATE-AC (P-DATA-TF variable field). */
  get maxPduLength(): number {
    return this.opts.config.maxPduLength;
  }

  /** @internal */
  get fastPathWanted(): boolean {
    return this.opts.fastPath !== false;
  }

  /** @internal */
  register(conn: Connection): void {
    this.connections.add(conn);
    if (!conn.fastPath && this.fastPathWanted && !this.warnedNoFastPath) {
      this.warnedNoFastPath = true;
      this.log.warn({ dcmjsDimse: dimse.version }, 'dcmjs-dimse internals differ from 0.3.3: receive fast path off (slower, still correct)');
    }
  }

  /** @internal Resolves when every store of `conn` has been answered. */
  async settled(conn: Connection): Promise<void> {
    const pending = [...conn.jobs].map((j) => this.inFlight.get(j)).filter((p): p is Promise<void> => p !== undefined);
    if (pending.length) await Promise.allSettled(pending);
  }

  /** @internal */
  protocolError(conn: Connection, message: string): void {
    this.stats.protocolErrors++;
    this.log.warn({ remote: `${conn.socket.remoteAddress}:${conn.socket.remotePort}`, error: message }, 'DICOM protocol error; aborting association');
  }

  /** @internal */
  unregister(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    if (conn.accepted) this.stats.active--;
    for (const job of conn.jobs) {
      if (!job.abort()) continue;
      conn.jobs.delete(job);
      // A partial instance: remove its temp file once nothing writes to it any more.
      const p = job.done
        .then(async () => {
          const tmp = job.tmpPath;
          await job.closeQuietly();
          if (tmp) await this.opts.spool.discard(tmp);
          this.log.warn({ callingAE: conn.callingAE, received: job.received }, 'association ended during a C-STORE; partial instance discarded');
        })
        .catch((err) => this.log.error({ err }, 'cannot discard a partial instance'))
        .finally(() => this.inFlight.delete(job));
      this.inFlight.set(job, p);
    }
  }

  /** @internal Association negotiation: AE titles, limits, presentation contexts; sends A-ASSOCIATE-AC or -RJ. */
  negotiate(association: DimseAssociation, conn: Connection, scp: InstanceType<typeof dimse.Scp>): void {
    const calledAE = normaliseAe(association.getCalledAeTitle());
    const callingAE = normaliseAe(association.getCallingAeTitle());
    const log = this.log.child({ callingAE, calledAE, remote: `${conn.socket.remoteAddress}:${conn.socket.remotePort}` });
    if (conn.accepted) {
      // A second A-ASSOCIATE-RQ on an established association (PS3.8 state Sta6, action AA-8: A-ABORT).
      // Accepting it again would also count the connection twice against maxAssociations, for good.
      this.protocolError(conn, 'A-ASSOCIATE-RQ within an established association');
      try {
        scp.sendAbort(2, 2);
      } catch {
        // the socket goes anyway
      }
      conn.socket.destroy();
      return;
    }
    let rejection = checkAeTitles(calledAE, callingAE, this.opts.config);
    if (!rejection && this.closing) rejection = limitRejection('shutting down');
    if (!rejection && this.stats.active >= this.opts.config.maxAssociations) rejection = limitRejection('too many associations');
    if (!rejection) {
      let accepted = 0;
      for (const { context } of association.getPresentationContexts()) {
        const d = negotiateContext(context.getAbstractSyntaxUid(), context.getTransferSyntaxUids());
        context.setResult(d.result, d.transferSyntax);
        if (d.result === PcResult.accept) accepted++;
        else log.debug({ abstractSyntax: context.getAbstractSyntaxUid(), result: d.result }, 'presentation context rejected');
      }
      if (accepted === 0) rejection = noContextRejection();
    }
    if (rejection) {
      log.warn({ reason: rejection.why }, 'association rejected');
      associations.inc({ result: 'rejected' });
      scp.sendAssociationReject(rejection.result, rejection.source, rejection.reason);
      // Close once the reject PDU is flushed; the peer normally closes first.
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 2000).unref();
      return;
    }
    association.setMaxPduLength(this.opts.config.maxPduLength);
    scp.sendAssociationAccept();
    conn.accepted = true;
    this.stats.associations++;
    this.stats.active++;
    log.info({ active: this.stats.active }, 'association accepted');
    associations.inc({ result: 'accepted' });
  }

  /** @internal A C-STORE command arrived and its first data PDV: set up the temp file. */
  startStore(conn: Connection, cmd: StoreCommand, pc: DimsePresentationContext, callingAE: string): StoreJob {
    const ts = pc.getAcceptedTransferSyntaxUid() ?? '';
    const refuse = this.closing ? 'shutting down' : undefined;
    const memoryLimit = this.opts.spool.journalInstanceLimit;
    const job = new StoreJob({
      // With the spool's journal a small instance stays in memory and commits through it; else a temp file.
      file: refuse || memoryLimit > 0 ? undefined : this.temps.take(),
      openFile: () => this.temps.take(),
      memoryLimit,
      header: buildFileMetaHeader({ sopClassUID: cmd.sopClassUID, sopInstanceUID: cmd.sopInstanceUID, transferSyntaxUID: ts, sourceAE: callingAE }),
      maxBytes: this.opts.config.maxInstanceBytes,
      pause: () => conn.socket.pause(),
      resume: () => conn.socket.resume(),
      refuse,
    });
    conn.jobs.add(job);
    // close() waits for stores from their first byte on.
    this.inFlight.set(job, job.done);
    return job;
  }

  /** @internal The dataset is complete: validate, commit, notify, answer. Never throws. */
  finishStore(conn: Connection, job: StoreJob, cmd: StoreCommand, pc: DimsePresentationContext, callingAE: string, answer: Answer): void {
    const { sopClassUID, sopInstanceUID } = cmd;
    const t0 = performance.now();
    const p = this.store(job, cmd, pc, callingAE)
      .catch((err: unknown): Outcome => {
        this.log.error({ err, callingAE, sopInstanceUID }, 'unexpected error while storing');
        return { status: StoreStatus.cannotUnderstand, comment: 'internal error' };
      })
      .then((out) => {
        conn.jobs.delete(job);
        const ok = out.status === StoreStatus.success;
        if (ok) this.stats.stored++;
        else this.stats.failed++;
        const status = `0x${out.status.toString(16).padStart(4, '0')}`;
        instancesReceived.inc({ status });
        if (ok) this.log.debug({ callingAE, sopClassUID, sopInstanceUID, status, ms: Math.round(performance.now() - t0) }, 'instance stored');
        else this.log.warn({ callingAE, sopClassUID, sopInstanceUID, status, errorComment: out.comment }, 'C-STORE failed');
        try {
          answer(out.status, out.comment === undefined ? undefined : errorComment(out.comment));
        } catch (err) {
          this.log.warn({ err, callingAE, sopInstanceUID }, 'cannot send C-STORE response');
        }
      })
      .finally(() => this.inFlight.delete(job));
    this.inFlight.set(job, p);
  }

  private async store(job: StoreJob, cmd: StoreCommand, pc: DimsePresentationContext, callingAE: string): Promise<Outcome> {
    await job.done;
    try {
      return await this.validateAndCommit(job, cmd.sopClassUID, cmd.sopInstanceUID, pc, callingAE);
    } catch (err) {
      const tmp = job.tmpPath;
      await job.closeQuietly();
      if (tmp) await this.opts.spool.discard(tmp).catch(() => undefined);
      if (err instanceof StoreFailure) return { status: err.status, comment: err.message };
      throw err;
    }
  }

  private async validateAndCommit(
    job: StoreJob,
    sopClassUID: string,
    sopInstanceUID: string,
    pc: DimsePresentationContext,
    callingAE: string,
  ): Promise<Outcome> {
    if (job.refused) fail(StoreStatus.outOfResources, `refused: ${job.refused}`);
    if (job.aborted) fail(StoreStatus.outOfResources, 'association aborted');
    if (job.tooLarge) fail(StoreStatus.outOfResources, `instance larger than ${this.opts.config.maxInstanceBytes} bytes`);
    if (job.error) fail(StoreStatus.outOfResources, `cannot write to spool: ${job.error.code ?? job.error.message}`);

    // The command: a class we store, negotiated on this context.
    if (!ACCEPTED_SOP_CLASSES.includes(sopClassUID)) fail(StoreStatus.sopClassNotSupported, `SOP class not supported: ${sopClassUID}`);
    if (pc.getAbstractSyntaxUid() !== sopClassUID) fail(StoreStatus.sopClassNotSupported, `SOP class ${sopClassUID} not negotiated on this context`);

    const ts = pc.getAcceptedTransferSyntaxUid() ?? '';
    const scan = await this.scan(job, ts);
    const ds = scan.dataset;

    // The dataset against the command.
    if (!ds.SOPClassUID) fail(StoreStatus.datasetDoesNotMatchSopClass, 'SOPClassUID missing');
    if (ds.SOPClassUID !== sopClassUID) fail(StoreStatus.datasetDoesNotMatchSopClass, `dataset SOP class ${String(ds.SOPClassUID)} differs from command`);
    if (!ds.SOPInstanceUID) fail(StoreStatus.datasetDoesNotMatchSopClass, 'SOPInstanceUID missing');
    if (ds.SOPInstanceUID !== sopInstanceUID) fail(StoreStatus.cannotUnderstand, 'SOPInstanceUID differs from the command');
    for (const k of ['StudyInstanceUID', 'SeriesInstanceUID']) if (!ds[k]) fail(StoreStatus.datasetDoesNotMatchSopClass, `${k} missing`);
    if (!ds.Rows || !ds.Columns) fail(StoreStatus.datasetDoesNotMatchSopClass, 'Rows/Columns missing: not an image');
    if (!scan.pixelData) fail(StoreStatus.datasetDoesNotMatchSopClass, 'PixelData missing');
    await this.checkPixelData(job, scan, ts);

    // Metadata (validates the UIDs' syntax too), then durable commit, then the caller, then Success.
    const ids = {
      studyInstanceUID: String(ds.StudyInstanceUID),
      seriesInstanceUID: String(ds.SeriesInstanceUID),
      sopInstanceUID,
    };
    let finalPath: string;
    try {
      finalPath = this.opts.spool.instancePath(ids.studyInstanceUID, ids.seriesInstanceUID, ids.sopInstanceUID);
    } catch (err) {
      return fail(StoreStatus.cannotUnderstand, (err as Error).message);
    }
    let metas: InstanceMeta[];
    try {
      metas = await this.metas(job, scan, ts, finalPath);
    } catch (err) {
      if (err instanceof InvalidInstanceError) fail(StoreStatus.cannotUnderstand, err.message);
      throw err;
    }

    try {
      if (job.inMemory) {
        const { chunks, bytes } = job.payload();
        await this.opts.spool.commitBuffers(ids, chunks, bytes);
      } else {
        await this.opts.spool.commit(job.tmpPath!, ids, job.takeHandle());
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.log.error({ err, callingAE, sopInstanceUID }, 'spool commit failed');
      fail(StoreStatus.outOfResources, `cannot commit to spool: ${code ?? 'error'}`);
    }

    if (this.opts.onStored) {
      try {
        await this.opts.onStored(metas, { callingAE, bytes: job.fileBytes });
      } catch (err) {
        this.log.error({ err, callingAE, sopInstanceUID, path: finalPath }, 'onStored failed; instance kept in spool, answering 0xA700');
        return { status: StoreStatus.outOfResources, comment: 'stored but not registered; retry', metas };
      }
    }
    return { status: StoreStatus.success, metas };
  }

  /** Header scan: on the kept head (as little of it as needed), else on a longer prefix from the temp file. */
  private async scan(job: StoreJob, ts: string): Promise<HeaderScan> {
    const explicit = isExplicitVr(ts);
    let buf = job.headBuffer();
    for (;;) {
      try {
        return scanHeader(buf, explicit, job.received);
      } catch (err) {
        if (err instanceof MalformedDataset) fail(StoreStatus.cannotUnderstand, err.message);
        if (!(err instanceof NeedMoreData)) throw err;
        if (job.headLength > buf.length) {
          buf = job.headBuffer(err.needed);
          continue;
        }
        const want = Math.min(job.received, Math.max(err.needed * 2, buf.length * 2, 1 << 20));
        if (want > MAX_HEADER_READ || want <= buf.length) fail(StoreStatus.cannotUnderstand, 'header too long');
        buf = await job.readDataset(0, want);
      }
    }
  }

  private async checkPixelData(job: StoreJob, scan: HeaderScan, ts: string): Promise<void> {
    const px = scan.pixelData!;
    // Pixel Data is OB or OW (UN where a sender lost the VR); anything else would be stored as text or a sequence.
    if (!PIXEL_DATA_VRS.has(px.vr)) fail(StoreStatus.cannotUnderstand, `PixelData with VR ${px.vr}`);
    if (isNativeSyntax(ts)) {
      if (px.length === undefined) fail(StoreStatus.cannotUnderstand, 'encapsulated PixelData in a native transfer syntax');
      const expected = expectedPixelBytes(scan.dataset);
      if (expected === undefined) fail(StoreStatus.datasetDoesNotMatchSopClass, 'SamplesPerPixel/BitsAllocated missing');
      if (px.length! < expected!) fail(StoreStatus.cannotUnderstand, `PixelData too short: ${px.length} of ${expected} bytes`);
      if (px.valueOffset + px.length! > job.received) {
        fail(StoreStatus.cannotUnderstand, `dataset truncated: PixelData ends at ${px.valueOffset + px.length!}, received ${job.received}`);
      }
      return;
    }
    if (px.length !== undefined) fail(StoreStatus.cannotUnderstand, 'PixelData not encapsulated in a compressed transfer syntax');
    try {
      await checkEncapsulated((pos, len) => job.readDataset(pos, len), px.valueOffset, job.received);
    } catch (err) {
      if (err instanceof MalformedDataset) fail(StoreStatus.cannotUnderstand, err.message);
      throw err;
    }
  }

  /** InstanceMeta from the scan, or through dcmjs when the header needs a full parse (functional groups…). */
  private async metas(job: StoreJob, scan: HeaderScan, ts: string, finalPath: string): Promise<InstanceMeta[]> {
    const fileMeta = { TransferSyntaxUID: ts };
    if (!scan.functionalGroups && !scan.needsFullParse && scan.irregular.length === 0) return metaFromDataset(scan.dataset, fileMeta, finalPath);
    const end = job.headerLength + scan.pixelData!.tagOffset;
    if (end > MAX_HEADER_READ) fail(StoreStatus.cannotUnderstand, 'header too long');
    const prefix = await job.readFile(0, end);
    const { meta, dataset } = parseHeader(prefix);
    return metaFromDataset(dataset, meta, finalPath);
  }
}

/** The dcmjs-dimse Scp subclass, bound to one receiver. */
function makeScpClass(receiver: DicomReceiver) {
  return class ReceiverScp extends dimse.Scp {
    private readonly conn: Connection;
    private callingAE = '';
    /** Stock path: stores being received, by dcmjs-dimse request object. */
    private readonly stockJobs = new Map<DimseCStoreRequest, { job: StoreJob; pc: DimsePresentationContext; cmd: StoreCommand }>();
    /** Fast path: the C-STORE whose dataset is arriving. */
    private pending: { cmd: StoreCommand; job?: StoreJob; pc?: DimsePresentationContext } | undefined;

    constructor(socket: Socket, opts: Record<string, unknown>) {
      super(socket, opts);
      // Nagle off: otherwise every response waits for the peer's delayed ACK (~40 ms per C-STORE).
      socket.setNoDelay(true);
      this.conn = { socket, scp: this, accepted: false, callingAE: '', jobs: new Set(), fastPath: false };
      (this as any).connected = true;
      this.conn.fastPath = receiver.fastPathWanted && this.installFastPath(socket);
      receiver.register(this.conn);
      this.on('close', () => {
        // Partial stores are aborted and discarded by the receiver (conn.jobs).
        this.pending = undefined;
        this.stockJobs.clear();
        receiver.unregister(this.conn);
      });
      this.on('networkError', () => {
        // dcmjs-dimse has logged it; the association cannot go on.
        socket.destroy();
      });
      socket.on('error', () => socket.destroy());
    }

    override associationRequested(association: DimseAssociation): void {
      try {
        this.callingAE = normaliseAe(association.getCallingAeTitle());
        this.conn.callingAE = this.callingAE;
        receiver.negotiate(association, this.conn, this);
      } catch {
        try {
          this.sendAssociationReject(1, 1, 1);
        } finally {
          this.conn.socket.end();
        }
      }
    }

    override associationReleaseRequested(): void {
      // Answer the release only after the stores of this association are answered (a peer using asynchronous
      // operations may ask early).
      void receiver.settled(this.conn).then(() => {
        try {
          if (!this.conn.socket.destroyed) this.sendAssociationReleaseResponse();
        } catch {
          this.conn.socket.destroy();
        }
      });
    }

    override cEchoRequest(request: DimseCEchoRequest, callback: (response: DimseCEchoResponse) => void): void {
      try {
        const response = dimse.responses.CEchoResponse.fromRequest(request);
        response.setStatus(StoreStatus.success);
        callback(response);
      } catch {
        this.conn.socket.destroy();
      }
    }

    // --- stock path (fast path off, or a command the fast path left to dcmjs-dimse) ---------------------

    override createStoreWritableStream(pc: DimsePresentationContext, request: DimseCStoreRequest): any {
      const cmd: StoreCommand = {
        messageId: Number(request.getMessageId()),
        sopClassUID: request.getAffectedSopClassUid() ?? '',
        sopInstanceUID: request.getAffectedSopInstanceUid() ?? '',
      };
      const job = receiver.startStore(this.conn, cmd, pc, this.callingAE);
      this.stockJobs.set(request, { job, pc, cmd });
      return new JobSink(job);
    }

    override createDatasetFromStoreWritableStream(_writable: unknown, pc: DimsePresentationContext, callback: (dataset: any) => void): void {
      // The bytes are on disk; dcmjs-dimse only needs a placeholder to carry on to cStoreRequest.
      callback(new dimse.Dataset({}, pc.getAcceptedTransferSyntaxUid()));
    }

    override cStoreRequest(request: DimseCStoreRequest, callback: (response: DimseCStoreResponse) => void): void {
      const entry = this.stockJobs.get(request);
      this.stockJobs.delete(request);
      if (!entry) {
        // No dataset was seen (cannot happen with dcmjs-dimse 0.3.3).
        try {
          const response = dimse.responses.CStoreResponse.fromRequest(request);
          response.setStatus(StoreStatus.cannotUnderstand);
          response.setErrorComment('no dataset received');
          callback(response);
        } catch {
          this.conn.socket.destroy();
        }
        return;
      }
      receiver.finishStore(this.conn, entry.job, entry.cmd, entry.pc, this.callingAE, this.answerer(entry.cmd, entry.pc));
    }

    /** Writes the C-STORE-RSP directly on the socket (no dcmjs encode). */
    private answerer(cmd: StoreCommand, pc: DimsePresentationContext): Answer {
      const socket = this.conn.socket;
      const pcId = pc.getPresentationContextId();
      return (status, comment) => {
        if (socket.destroyed) throw new Error('association closed before the response');
        socket.write(encodeStoreResponse({ pcId, messageId: cmd.messageId, sopClassUID: cmd.sopClassUID, sopInstanceUID: cmd.sopInstanceUID, status, errorComment: comment }));
      };
    }

    // --- fast path ---------------------------------------------------------------------------------------

    /**
     * Puts a PduReader between the socket and dcmjs-dimse (see pdu-reader.ts): C-STORE-RQ commands and their
     * data are handled here; everything else goes to dcmjs-dimse as complete PDUs. If the library does not
     * look as expected (one 'data' listener on the socket), the stock path stays in place.
     */
    private installFastPath(socket: Socket): boolean {
      const self = this as any;
      const listeners = socket.listeners('data');
      if (listeners.length !== 1) return false;
      const stock = listeners[0] as (chunk: Buffer) => void;
      socket.removeListener('data', stock);
      const fail = (message: string, reason = 0) => {
        reader.stop();
        receiver.protocolError(this.conn, message);
        try {
          if (this.conn.accepted) this.sendAbort(2, reason);
        } catch {
          // the socket goes anyway
        }
        // end(), not destroy(): destroying a socket that still holds unread bytes from the peer makes the kernel
        // answer with a RST, which can throw away the A-ABORT before the peer reads it. The peer closes once it
        // has read the abort; whatever it still sends is ignored (the reader is stopped) until then.
        socket.end();
        setTimeout(() => socket.destroy(), ABORT_GRACE_MS).unref();
      };
      const contextFor = (pcId: number): DimsePresentationContext | undefined => {
        // dcmjs-dimse throws for an id that was never proposed (a corrupted PDV header): not accepted, then.
        let pc: DimsePresentationContext | undefined;
        try {
          pc = self.association?.getPresentationContext(pcId) as DimsePresentationContext | undefined;
        } catch {
          return undefined;
        }
        return pc && pc.getResult() === PcResult.accept ? pc : undefined;
      };
      const reader = new PduReader({
        stock: (pdu) => {
          if (socket.destroyed) reader.stop();
          else stock(pdu);
        },
        command: (pcId, value) => {
          if (this.pending) {
            fail('command received while a C-STORE dataset was pending');
            return true;
          }
          if (!this.conn.accepted || self.dimse) return false;
          const cmd = parseStoreCommand(value);
          if (!cmd || !contextFor(pcId)) return false;
          this.pending = { cmd };
          return true;
        },
        storePending: () => this.pending !== undefined,
        data: (pcId, chunk) => {
          if (socket.destroyed) return reader.stop();
          const p = this.pending!;
          if (!p.job) {
            const pc = contextFor(pcId);
            if (!pc) return fail(`data on presentation context ${pcId}, which was not accepted`);
            p.pc = pc;
            p.job = receiver.startStore(this.conn, p.cmd, pc, this.callingAE);
          } else if (pcId !== p.pc!.getPresentationContextId()) {
            // Every fragment of a message travels on one presentation context (PS3.8 §9.3.5.1).
            return fail(`dataset fragment on presentation context ${pcId}, the store began on ${p.pc!.getPresentationContextId()}`);
          }
          p.job.push(chunk);
        },
        dataEnd: (pcId) => {
          const p = this.pending!;
          this.pending = undefined;
          if (p.job && pcId !== p.pc!.getPresentationContextId()) {
            return fail(`dataset fragment on presentation context ${pcId}, the store began on ${p.pc!.getPresentationContextId()}`);
          }
          if (!p.job) {
            const pc = contextFor(pcId);
            if (!pc) return fail(`data on presentation context ${pcId}, which was not accepted`);
            p.pc = pc;
            p.job = receiver.startStore(this.conn, p.cmd, pc, this.callingAE);
          }
          p.job.end();
          receiver.finishStore(this.conn, p.job, p.cmd, p.pc!, this.callingAE, this.answerer(p.cmd, p.pc!));
        },
        pduSeen: () => {
          self.lastPduTime = Date.now();
        },
        protocolError: (message, reason) => fail(message, reason),
      }, { maxPduLength: receiver.maxPduLength });
      socket.on('data', (chunk: Buffer) => {
        // Nothing a peer sends may throw out of here: an exception in a socket 'data' listener is an uncaught
        // exception, which would end the whole service. Whatever throws (our hooks, dcmjs-dimse's PDU parsing
        // behind `stock`) aborts this association only.
        try {
          reader.push(chunk);
        } catch (err) {
          fail(`cannot process PDU: ${(err as Error).message}`);
        }
      });
      return true;
    }

    override abort(source: number, reason: number): void {
      // A-ABORT from the peer: drop the connection; partial stores are discarded on close.
      void source;
      void reason;
      this.conn.socket.destroy();
    }
  };
}
