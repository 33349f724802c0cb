/**
 * Security and limits against real peers: DICOM TLS with storescu (certificates made here with openssl: a CA,
 * a server and a client certificate, and a client certificate from another CA), the PDU limit announced in the
 * A-ASSOCIATE-AC, the instance size limit (spool left clean), HTTPS and a file-held token for the API.
 * maxAssociations (transient rejection) is covered by scp.test.ts "rejects associations beyond maxAssociations".
 */
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startService, type Service } from '../../src/main.js';
import { DicomReceiver } from '../../src/scp/receiver.js';
import { StoreStatus } from '../../src/scp/policy.js';
import { Spool } from '../../src/spool/spool.js';
import { AssocConnection, associateRq, cStoreRq, datasetPdus, parseAssociateAc, parseResponse, pdataTf, PduType, pdvs } from '../helpers/assoc-client.js';
import { datasetOffset, echoscu, EXPLICIT_LE, hasTool, makeTestMr, MR_IMAGE_STORAGE, runTool, storescu } from '../helpers/dcmtk.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';

const AE = 'SAXRANGE';
const ctx = [{ id: 1, abstractSyntax: MR_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }];

async function openssl(args: string[]): Promise<void> {
  const r = await runTool('openssl', args);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.output}`);
}

/** CA, server and client certificates (RSA 2048, PEM), plus a client certificate signed by another CA. */
async function makePki(dir: string) {
  const p = (n: string) => join(dir, n);
  const ca = async (name: string) => {
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`), '-days', '2', '-subj', `/CN=${name}`]);
  };
  const leaf = async (name: string, caName: string, ext: string) => {
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${name}`]);
    await writeFile(p(`${name}.ext`), ext);
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${caName}.crt`), '-CAkey', p(`${caName}.key`), '-CAcreateserial', '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`)]);
    await chmod(p(`${name}.key`), 0o600);
  };
  await ca('ca');
  await ca('rogue-ca');
  await leaf('server', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  await leaf('rogue-client', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  return p;
}

/** A logger whose JSON lines are kept (to find the logged reason of an abort). */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('DICOM TLS (storescu +tls)', () => {
  let dir: string;
  let p: (n: string) => string;
  let receiver: DicomReceiver;
  let spool: Spool;
  let port: number;
  let file: string;
  const captured = capturingLogger();

  beforeAll(async () => {
    for (const t of ['storescu', 'echoscu', 'openssl']) if (!(await hasTool(t))) throw new Error(`${t} not installed`);
    dir = await mkdtemp(join(tmpdir(), 'sax-range-tls-'));
    p = await makePki(dir);
    // Through loadConfig, as `serve` does it: the variables, the key's mode check.
    const config = loadConfig({
      env: { SAX_RANGE_TLS_CERT: p('server.crt'), SAX_RANGE_TLS_KEY: p('server.key'), SAX_RANGE_TLS_CA: p('ca.crt'), SAX_RANGE_TLS_REQUIRE_CLIENT_CERT: 'true' },
      overrides: { dicomPort: 0 },
    });
    spool = new Spool(join(dir, 'spool'));
    await spool.init();
    receiver = new DicomReceiver({ config, spool, logger: captured.logger, host: '127.0.0.1' });
    port = await receiver.listen();
    file = join(dir, 'mr.dcm');
    await writeFile(file, makeTestMr({ studyInstanceUID: '2.25.5001', seriesInstanceUID: '2.25.5001.1', sopInstanceUID: '2.25.5001.1.1' }));
  });

  afterAll(async () => {
    await receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const tls = (key: string, cert: string) => ['+tls', p(key), p(cert), '+cf', p('ca.crt')];

  it('stores an instance sent over TLS with a client certificate from the CA', async () => {
    const r = await storescu({ port, calledAE: AE }, [file], ['-v', ...tls('client.key', 'client.crt')]);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/Received Store Response \(Success\)/);
    await expect(readFile(spool.instancePath('2.25.5001', '2.25.5001.1', '2.25.5001.1.1'))).resolves.toBeInstanceOf(Buffer);
    const e = await echoscu({ port, calledAE: AE }, tls('client.key', 'client.crt'));
    expect(e.code, e.output).toBe(0);
  });

  it('refuses a client certificate from another CA, a client without a certificate, and plain TCP; nothing is stored', async () => {
    await rm(spool.instancePath('2.25.5001', '2.25.5001.1', '2.25.5001.1.1'));
    const before = receiver.stats.associations;
    const rogue = await storescu({ port, calledAE: AE }, [file], tls('rogue-client.key', 'rogue-client.crt'));
    expect(rogue.code).not.toBe(0);
    const anonymous = await storescu({ port, calledAE: AE }, [file], ['+tla', '+cf', p('ca.crt')]);
    expect(anonymous.code).not.toBe(0);
    const plain = await storescu({ port, calledAE: AE }, [file], ['-to', '5', '-ta', '5', '-td', '5']);
    expect(plain.code).not.toBe(0);
    // Raw TLS client without a certificate: the handshake fails (or the socket is closed right after it).
    const conn = await AssocConnection.open({ port, tls: { ca: await readFile(p('ca.crt')), servername: 'localhost' } }).catch((err: Error) => err);
    if (conn instanceof AssocConnection) {
      conn.write(associateRq({ callingAE: 'RAW', calledAE: AE, contexts: ctx }));
      expect(await conn.next(5000)).toBe('closed');
    }
    expect(receiver.stats.associations).toBe(before);
    await expect(readFile(spool.instancePath('2.25.5001', '2.25.5001.1', '2.25.5001.1.1'))).rejects.toThrow();
    expect(captured.lines.some((l) => l.msg === 'DICOM TLS handshake failed; connection refused')).toBe(true);
  });
});

describe('DICOM limits: max PDU, max instance size', () => {
  let dir: string;
  let receiver: DicomReceiver;
  let spool: Spool;
  let port: number;
  const captured = capturingLogger();
  const dataset = (uid: string, rows = 64) => {
    const f = makeTestMr({ studyInstanceUID: '2.25.6001', seriesInstanceUID: '2.25.6001.1', sopInstanceUID: uid, rows, columns: rows });
    return f.subarray(datasetOffset(f));
  };
  const open = async () => {
    const conn = await AssocConnection.open({ port });
    conn.write(associateRq({ callingAE: 'LIMITS', calledAE: AE, contexts: ctx }));
    const ac = await conn.next(10_000);
    if (typeof ac === 'string' || ac.type !== PduType.associateAc) throw new Error('association not accepted');
    return { conn, ac: parseAssociateAc(ac.body) };
  };
  const answer = async (conn: AssocConnection) => {
    for (;;) {
      const q = await conn.next(10_000);
      if (typeof q === 'string') return q;
      if (q.type === PduType.abort) return { abort: { source: q.body[2], reason: q.body[3] } };
      const cmd = q.type === PduType.pData ? pdvs(q.body).find((v) => v.control & 1) : undefined;
      if (cmd) return parseResponse(cmd.value);
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-range-limits-'));
    spool = new Spool(join(dir, 'spool'));
    await spool.init();
    receiver = new DicomReceiver({
      config: { aeTitle: AE, dicomPort: 0, allowedAEs: ['*'], maxInstanceBytes: 30_000, maxAssociations: 4, maxPduLength: 16_384 },
      spool,
      logger: captured.logger,
      host: '127.0.0.1',
    });
    port = await receiver.listen();
  });

  afterAll(async () => {
    await receiver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('announces maxPduLength in the A-ASSOCIATE-AC; PDUs up to it are fine', async () => {
    const { conn, ac } = await open();
    expect(ac.maxPduLength).toBe(16_384);
    conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, '2.25.6001.1.1')));
    // Variable field exactly 16384 bytes: a PDV of 16378 value bytes + 6.
    for (const d of datasetPdus(1, dataset('2.25.6001.1.1', 96), 16_384 - 6)) conn.write(d);
    expect(await answer(conn)).toMatchObject({ status: StoreStatus.success });
    conn.destroy();
  });

  it('aborts an association that sends a P-DATA-TF larger than announced, with the reason logged; the next one works', async () => {
    const { conn } = await open();
    conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, '2.25.6001.1.2')));
    for (const d of datasetPdus(1, dataset('2.25.6001.1.2', 96), 16_384 - 5)) conn.write(d);
    // A-ABORT, source 2 (service provider), reason 6 (invalid PDU parameter value).
    expect(await answer(conn)).toEqual({ abort: { source: 2, reason: 6 } });
    conn.destroy();
    const logged = captured.lines.find((l) => l.msg === 'DICOM protocol error; aborting association');
    expect(logged?.error).toBe('P-DATA-TF of 16385 bytes exceeds the announced maximum PDU length 16384');
    expect(receiver.stats.protocolErrors).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 200));
    await expect(readFile(spool.instancePath('2.25.6001', '2.25.6001.1', '2.25.6001.1.2'))).rejects.toThrow();
    expect((await readdir(spool.tmpDir)).length).toBeLessThanOrEqual(1);
    const again = await open();
    again.conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, '2.25.6001.1.3')));
    for (const d of datasetPdus(1, dataset('2.25.6001.1.3', 32), 8000)) again.conn.write(d);
    expect(await answer(again.conn)).toMatchObject({ status: StoreStatus.success });
    again.conn.destroy();
  });

  it('answers 0xA700 for an instance over maxInstanceBytes, leaves the spool clean and keeps the association', async () => {
    const { conn } = await open();
    // 128×128×2 = 32 KiB of pixels > 30 000 bytes.
    conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, '2.25.6001.1.4')));
    for (const d of datasetPdus(1, dataset('2.25.6001.1.4', 128), 8000)) conn.write(d);
    const r = await answer(conn);
    expect(r).toMatchObject({ status: StoreStatus.outOfResources });
    expect((r as { errorComment?: string }).errorComment).toMatch(/larger than 30000 bytes/);
    await expect(readFile(spool.instancePath('2.25.6001', '2.25.6001.1', '2.25.6001.1.4'))).rejects.toThrow();
    expect((await readdir(spool.tmpDir)).length).toBeLessThanOrEqual(1);
    conn.write(pdataTf(1, 0x03, cStoreRq(2, MR_IMAGE_STORAGE, '2.25.6001.1.5')));
    for (const d of datasetPdus(1, dataset('2.25.6001.1.5', 32), 8000)) conn.write(d);
    expect(await answer(conn)).toMatchObject({ status: StoreStatus.success });
    conn.destroy();
  });
});

describe('HTTPS API and a file-held API token', () => {
  let dir: string;
  let service: Service;
  let config: ReturnType<typeof testServiceConfig>;
  let ca: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-range-https-'));
    const p = await makePki(dir);
    ca = await readFile(p('ca.crt'));
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'file-token-123\n', { mode: 0o600 });
    config = testServiceConfig(dir, { roles: ['api'], httpsCertFile: p('server.crt'), httpsKeyFile: p('server.key'), apiTokenFile: tokenFile });
    service = await startService(config, createLogger('https-test', 'silent'));
  });

  afterAll(async () => {
    await service?.close();
    if (config) await removeServiceKeys(config);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: service.httpPort, path, ca, servername: 'localhost', headers }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('serves the API over HTTPS (certificate checked against the CA) and wants the token read from the file', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/api/studies')).status).toBe(401);
    expect((await get('/api/studies', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await get('/api/studies', { authorization: 'Bearer file-token-123' })).status).toBe(200);
  });

  it('does not answer plain HTTP on the HTTPS port', async () => {
    const r = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: service.httpPort, path: '/healthz' }, (res) => resolve(`status ${res.statusCode}`));
      req.on('error', (err) => resolve(`error ${err.message}`));
      req.setTimeout(5000, () => req.destroy(new Error('timeout')));
      req.end();
    });
    expect(r).not.toBe('status 200');
  });
});
