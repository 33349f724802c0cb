/**
 * The Orthanc REST client against a real Orthanc 1.10.1 (test/helpers/orthanc.ts), plus small Node servers
 * for what Orthanc cannot be made to do on demand (HTTPS with a private CA, 503, a hung answer).
 */
import { execFileSync } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readInstanceMeta } from '../../src/dicom/meta.js';
import { ExportError } from '../../src/export/errors.js';
import { createOrthancRestClient, type OrthancRestClient } from '../../src/export/orthanc-rest.js';
import { buildResult, type PhaseInput } from '../../src/inference/result.js';
import { writePhantomStudy } from '../../src/phantom/index.js';
import { buildOutputs, sourceInfoFromFiles, type OutputObject } from '../../src/sr/index.js';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc.js';

async function expectExportError(p: Promise<unknown>): Promise<ExportError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ExportError);
    return err as ExportError;
  }
  throw new Error('expected an ExportError');
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function close(server: Server): Promise<void> {
  server.closeAllConnections?.();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('Orthanc REST export', () => {
  let dir: string;
  let orthanc: OrthancHandle;
  let client: OrthancRestClient;
  let outputs: OutputObject[];
  let sourceMr: Uint8Array[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-export-rest-'));
    // A small phantom study and its outputs (6 slices, 128²).
    const { truth, paths } = await writePhantomStudy(join(dir, 'study'), { seed: 5, slices: 6, phases: 20, rows: 128 });
    const pathOf = new Map<string, string>();
    for (const p of paths) pathOf.set((await readInstanceMeta(p))[0].sopInstanceUID, p);
    const phase = (p: 'ED' | 'ES'): PhaseInput => ({
      phaseIndex: p === 'ED' ? truth.ed : truth.es,
      triggerTime: null,
      method: 'test',
      slices: truth.sopInstanceUIDs[p].map((sop, k) => ({
        index: k,
        position: truth.positions[k],
        sopInstanceUID: sop,
        probabilities: truth.labels[p][k] === 'OAP' ? [0.8, 0.15, 0.05] : truth.labels[p][k] === 'IN' ? [0.05, 0.9, 0.05] : [0.05, 0.15, 0.8],
      })),
    });
    const result = buildResult({
      studyInstanceUID: truth.studyInstanceUID,
      stackId: 'export-test',
      seriesInstanceUIDs: [...new Set(truth.seriesInstanceUIDs)],
      model: { id: 'cbr-small', version: '1.0.0', sha256: 'f'.repeat(64) },
      order: { direction: 'apex-to-base', method: 'geometry' },
      phases: { ED: phase('ED'), ES: phase('ES') },
    });
    const files = {
      ED: truth.sopInstanceUIDs.ED.map((s) => ({ path: pathOf.get(s)! })),
      ES: truth.sopInstanceUIDs.ES.map((s) => ({ path: pathOf.get(s)! })),
    };
    const sources = await sourceInfoFromFiles(result, files);
    outputs = buildOutputs(result, sources, undefined, { softwareVersion: '0.1.0' });
    sourceMr = await Promise.all(files.ED.slice(0, 2).map(async (f) => new Uint8Array(await readFile(f.path))));

    // OverwriteInstances false, as Orthanc ships: a second store answers AlreadyStored.
    orthanc = await startOrthanc(join(dir, 'orthanc'), { OverwriteInstances: false });
    client = createOrthancRestClient({ url: orthanc.url, username: orthanc.auth.username, password: orthanc.auth.password, timeoutMs: 10_000 });
  });

  afterAll(async () => {
    client?.close();
    await orthanc?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores the SR and an SC into the source study (POST /instances)', async () => {
    const mr = await Promise.all(sourceMr.map((b) => client.storeInstance(b)));
    const studyId = mr[0].parentStudy;
    expect(studyId).toBeTruthy();
    const sr = outputs.find((o) => o.kind === 'sr')!;
    const sc = outputs.find((o) => o.kind === 'sc')!;
    for (const o of [sr, sc]) {
      const stored = await client.storeInstance(o.part10);
      expect(stored.status).toBe('Success');
      expect(stored.parentStudy).toBe(studyId);
      const tags = await orthanc.api<Record<string, string>>(`/instances/${stored.id}/simplified-tags`);
      expect(tags.SOPInstanceUID).toBe(o.sopInstanceUID);
      expect(tags.SeriesInstanceUID).toBe(o.seriesInstanceUID);
      expect(tags.SOPClassUID).toBe(o.sopClassUID);
      expect(tags.Modality).toBe(o.kind === 'sr' ? 'SR' : 'OT');
      expect(tags.PatientID).toMatch(/^PHANTOM-/);
    }
    const study = await orthanc.api<{ Series: string[] }>(`/studies/${studyId}`);
    expect(study.Series.length).toBeGreaterThanOrEqual(3); // the MR series, the SR series, the SC series
  });

  it('stores a second time without a duplicate: same Orthanc ID, AlreadyStored, instance count unchanged', async () => {
    const sr = outputs.find((o) => o.kind === 'sr')!;
    const before = await orthanc.api<string[]>('/instances');
    const first = await client.storeInstance(sr.part10);
    const again = await client.storeInstance(sr.part10);
    expect(again.id).toBe(first.id);
    expect(again.status).toBe('AlreadyStored');
    expect(await orthanc.api<string[]>('/instances')).toHaveLength(before.length);
  });

  it('previews a stored SC as PNG', async () => {
    const montage = outputs.filter((o) => o.kind === 'sc').at(-1)!;
    const stored = await client.storeInstance(montage.part10);
    const png = await orthanc.api<Uint8Array>(`/instances/${stored.id}/preview`, { raw: true });
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  });

  it('stores every object of the stack (17 for 6 slices: 1 SR + 12 slice SCs + 2 montages + 2 KOS)', async () => {
    expect(outputs).toHaveLength(17);
    for (const o of outputs) expect(['Success', 'AlreadyStored']).toContain((await client.storeInstance(o.part10)).status);
    const kos = outputs.find((o) => o.kind === 'kos')!;
    const found = await orthanc.api<string[]>('/tools/find', { body: { Level: 'Instance', Query: { SOPInstanceUID: kos.sopInstanceUID } } });
    expect(found).toHaveLength(1);
  });

  it('reports a wrong password as a permanent EXPORT_AUTH error (401)', async () => {
    const bad = createOrthancRestClient({ url: orthanc.url, username: orthanc.auth.username, password: 'wrong' });
    try {
      const e = await expectExportError(bad.storeInstance(outputs[0].part10));
      expect([e.code, e.retryable, e.httpStatus]).toEqual(['EXPORT_AUTH', false, 401]);
    } finally {
      bad.close();
    }
  });

  it('reports a file Orthanc cannot parse as a permanent EXPORT_REJECTED error (400)', async () => {
    const junk = new Uint8Array(400);
    junk.set([0x44, 0x49, 0x43, 0x4d], 128); // "DICM", then garbage
    junk.fill(0xff, 132);
    const e = await expectExportError(client.storeInstance(junk));
    expect([e.code, e.retryable, e.httpStatus]).toEqual(['EXPORT_REJECTED', false, 400]);
    expect(e.message).toMatch(/^HTTP 400: \S/); // Orthanc's own words follow the status
    // And bytes that are not Part 10 at all never leave the process.
    const local = await expectExportError(client.storeInstance(new Uint8Array(10)));
    expect([local.code, local.retryable]).toEqual(['EXPORT_INVALID_INPUT', false]);
  });

  it('reports a stopped Orthanc as a retryable network error', async () => {
    await orthanc.stop();
    try {
      const e = await expectExportError(client.storeInstance(outputs[0].part10));
      expect([e.code, e.retryable]).toEqual(['EXPORT_NETWORK', true]);
      expect(e.message).toMatch(/ECONNREFUSED/);
    } finally {
      await orthanc.start();
    }
    expect((await client.storeInstance(outputs[0].part10)).status).toBe('AlreadyStored');
  });
});

describe('Orthanc REST client transport', () => {
  let dir: string;
  const answer = JSON.stringify({ ID: 'abc', Status: 'Success', ParentStudy: 's' });
  const part10 = (() => {
    const b = new Uint8Array(200);
    b.set([0x44, 0x49, 0x43, 0x4d], 128);
    return b;
  })();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-export-tls-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('talks HTTPS with a custom CA, and refuses an untrusted certificate permanently', async () => {
    let hasOpenssl = true;
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      hasOpenssl = false;
    }
    if (!hasOpenssl) return; // openssl is part of Debian's base system; skip quietly elsewhere
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'ignore' },
    );
    const cert = await readFile(join(dir, 'cert.pem'));
    const key = await readFile(join(dir, 'key.pem'));
    let contentType = '';
    const server = createHttpsServer({ key, cert }, (req, res) => {
      contentType = String(req.headers['content-type']);
      req.resume().on('end', () => res.setHeader('content-type', 'application/json').end(answer));
    });
    const port = await listen(server);
    const trusted = createOrthancRestClient({ url: `https://127.0.0.1:${port}`, username: 'u', password: 'p', tls: { ca: cert } });
    const untrusted = createOrthancRestClient({ url: `https://127.0.0.1:${port}` });
    try {
      expect(await trusted.storeInstance(part10)).toEqual({ id: 'abc', status: 'Success', parentStudy: 's' });
      expect(contentType).toBe('application/dicom');
      const e = await expectExportError(untrusted.storeInstance(part10));
      expect([e.code, e.retryable]).toEqual(['EXPORT_TLS', false]);
    } finally {
      trusted.close();
      untrusted.close();
      await close(server);
    }
  });

  it('treats 503 as busy and a hung answer as a timeout, both retryable', async () => {
    let mode: 'busy' | 'hang' = 'busy';
    const server = createHttpServer((req, res) => {
      if (mode === 'busy') req.resume().on('end', () => res.writeHead(503).end('{"Message":"busy"}'));
      // 'hang': never answer.
    });
    const port = await listen(server);
    const c = createOrthancRestClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 300 });
    try {
      const busy = await expectExportError(c.storeInstance(part10));
      expect([busy.code, busy.retryable, busy.httpStatus]).toEqual(['EXPORT_BUSY', true, 503]);
      mode = 'hang';
      const hung = await expectExportError(c.storeInstance(part10));
      expect([hung.code, hung.retryable]).toEqual(['EXPORT_TIMEOUT', true]);
    } finally {
      c.close();
      await close(server);
    }
  });

  it('refuses bad options', () => {
    expect(() => createOrthancRestClient({ url: 'ftp://x' })).toThrow(/http: or https:/);
    expect(() => createOrthancRestClient({ url: 'http://u:p@x' })).toThrow(/credentials/);
    expect(() => createOrthancRestClient({ url: 'http://x', username: 'u' })).toThrow(/go together/);
    expect(() => createOrthancRestClient({ url: 'http://x', tls: { ca: 'x' } })).toThrow(/not https/);
  });
});
