/**
 * The spool's journal (src/spool/journal.ts) on the real file system: what a commit through it leaves behind,
 * what a crash before the checkpoint loses (nothing), the torn tail, recycled segments, group commit.
 * A "crash" here: the Spool is dropped without close() and the files it wrote unsynced are removed or cut,
 * as a power cut may leave them; the journal segments stay as written.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JournalError, SpoolJournal, syncFiles } from '../../src/spool/journal.js';
import { Spool, type InstanceIds } from '../../src/spool/spool.js';

const MiB = 1024 * 1024;
const STUDY = '2.25.7001';
const SERIES = `${STUDY}.1`;
const ids = (i: number, series = SERIES): InstanceIds => ({ studyInstanceUID: STUDY, seriesInstanceUID: series, sopInstanceUID: `${series}.${i}` });

/** An instance's bytes in a few chunks, as the SCP hands them over. */
function instance(bytes: number): Buffer[] {
  const b = randomBytes(bytes);
  const cut = [0, Math.floor(bytes / 3), Math.floor((2 * bytes) / 3), bytes];
  return [b.subarray(cut[0], cut[1]), b.subarray(cut[1], cut[2]), b.subarray(cut[2], cut[3])];
}
const whole = (chunks: Buffer[]) => Buffer.concat(chunks);

describe('spool journal', () => {
  let root: string;
  const opened: Spool[] = [];
  const open = async (opts: ConstructorParameters<typeof Spool>[1] = {}) => {
    const s = new Spool(root, { journalSegmentBytes: 2 * MiB, journalIdleCheckpointMs: 0, ...opts });
    await s.init();
    opened.push(s);
    return s;
  };

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'sax-range-journal-'));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it('commits through the journal: the file is in place, tmp/ is empty, one record per instance', async () => {
    const spool = await open();
    const data = instance(100_000);
    const path = await spool.commitBuffers(ids(1), data, 100_000);
    expect(path).toBe(spool.instancePath(STUDY, SERIES, `${SERIES}.1`));
    expect((await readFile(path)).equals(whole(data))).toBe(true);
    expect(readdirSync(spool.tmpDir)).toEqual([]);
    expect(spool.journalStats).toMatchObject({ appended: 1, replayed: 0 });
    expect(spool.journalStats!.syncs).toBeGreaterThanOrEqual(1);
  });

  it('after a crash before the checkpoint, init() writes every acknowledged instance again, byte for byte', async () => {
    const first = await open();
    const sent = new Map<string, Buffer>();
    for (let i = 1; i <= 6; i++) {
      const data = instance(40_000 + i * 1000);
      const p = await first.commitBuffers(ids(i, i <= 3 ? SERIES : `${STUDY}.2`), data, whole(data).length);
      sent.set(p, whole(data));
    }
    // Power cut: the unsynced spool files are gone or cut short (the journal was synced before each answer).
    const paths = [...sent.keys()];
    for (const p of paths.slice(0, 3)) await rm(p);
    for (const p of paths.slice(3)) await truncate(p, 10);
    await rm(join(root, 'studies', STUDY, `${STUDY}.2`), { recursive: true });
    opened.splice(0); // dropped, not closed

    const second = await open();
    expect(second.replayed).toBe(6);
    for (const [p, bytes] of sent) expect((await readFile(p)).equals(bytes)).toBe(true);
    expect(await second.listInstances(STUDY)).toEqual([...paths].sort());
  });

  it('replays nothing once a checkpoint has made the files durable', async () => {
    const first = await open();
    for (let i = 1; i <= 3; i++) await first.commitBuffers(ids(i), instance(20_000), 20_000);
    await first.checkpoint();
    expect(first.journalStats!.checkpoints).toBe(1);
    await rm(first.instancePath(STUDY, SERIES, `${SERIES}.1`));
    opened.splice(0);
    const second = await open();
    expect(second.replayed).toBe(0);
    // Removed after its checkpoint: it stays removed (the journal no longer holds it).
    expect(existsSync(second.instancePath(STUDY, SERIES, `${SERIES}.1`))).toBe(false);
  });

  it('a resent SOP Instance UID: the later copy wins on replay, as it did before the crash', async () => {
    const first = await open();
    const a = instance(30_000);
    const b = instance(31_000);
    await first.commitBuffers(ids(1), a, 30_000);
    const p = await first.commitBuffers(ids(1), b, 31_000);
    await rm(p);
    opened.splice(0);
    const second = await open();
    expect(second.replayed).toBe(2);
    expect((await readFile(p)).equals(whole(b))).toBe(true);
  });

  it('a torn last record is not replayed; the records before it are', async () => {
    const first = await open();
    const paths: string[] = [];
    for (let i = 1; i <= 3; i++) paths.push(await first.commitBuffers(ids(i), instance(50_000), 50_000));
    opened.splice(0);
    for (const p of paths) await rm(p);
    // Flip one byte in the payload of the third record (the active segment, the only one with an id, holds all three).
    const withId = segmentFiles(root).filter((f) => segmentId(f) > 0n);
    expect(withId.length).toBe(1);
    const seg = withId[0]!;
    const fd = openSync(seg, 'r+');
    const third = 4096 + 2 * align8(48 + keyLength(ids(1)) + 50_000) + 48 + keyLength(ids(3)) + 1000;
    const one = Buffer.alloc(1);
    readSync(fd, one, 0, 1, third);
    one[0] ^= 0xff;
    writeSync(fd, one, 0, 1, third);
    closeSync(fd);

    const second = await open();
    expect(second.replayed).toBe(2);
    expect(existsSync(paths[0]!) && existsSync(paths[1]!)).toBe(true);
    expect(existsSync(paths[2]!)).toBe(false);
  });

  it('rotates through segments under load; replay keeps write order across segments and never replays a checkpointed one', async () => {
    const spool = await open({ journalSegmentBytes: 1 * MiB });
    // 1 MiB segments take ~9 records of 100 kB: 60 commits rotate several times and reuse segments. Seven SOP
    // Instance UIDs sent again and again: every copy of one lands in another segment than the one before.
    const writes: Array<[string, Buffer]> = [];
    for (let i = 0; i < 60; i++) {
      const data = instance(100_000);
      writes.push([await spool.commitBuffers(ids((i % 7) + 1), data, 100_000), whole(data)]);
    }
    expect(spool.journalStats!.checkpoints).toBeGreaterThanOrEqual(4);
    // A few segment files, all of the configured size: checkpointed segments are reused, not piled up.
    expect(segmentFiles(root).length).toBeLessThanOrEqual(4);
    for (const f of segmentFiles(root)) expect(statSync(f).size).toBe(1 * MiB);
    // Crash now, and lose every spool file: only records of segments not checkpointed yet are replayed.
    opened.splice(0);
    for (const p of new Set(writes.map(([p]) => p))) await rm(p, { force: true });
    const again = await open({ journalSegmentBytes: 1 * MiB });
    expect(again.replayed).toBeGreaterThan(0);
    expect(again.replayed).toBeLessThan(60);
    // The replayed records are the last `replayed` writes; each file holds the last copy of its UID.
    const replayed = writes.slice(writes.length - again.replayed);
    const latest = new Map(replayed);
    for (const [p, bytes] of latest) expect((await readFile(p)).equals(bytes), p).toBe(true);
    for (const [p] of writes) expect(existsSync(p)).toBe(latest.has(p));
  });

  it('an instance whose spool file cannot be written (ENOSPC) is refused and cancelled: it does not come back on replay', async () => {
    /** Once `full`, every temp file is /dev/full: writes fail with ENOSPC after the journal record was appended. */
    class FlakyTmp extends Spool {
      full = false;
      private n = 0;
      override tmpPath(): string {
        if (!this.full) return super.tmpPath();
        const link = join(this.tmpDir, `full-${this.n++}.part`);
        symlinkSync('/dev/full', link);
        return link;
      }
    }
    const spool = new FlakyTmp(root, { journalSegmentBytes: 2 * MiB, journalIdleCheckpointMs: 0 });
    await spool.init();
    const kept = await spool.commitBuffers(ids(1), instance(20_000), 20_000);
    spool.full = true;
    await expect(spool.commitBuffers(ids(2), instance(20_000), 20_000)).rejects.toThrow(/ENOSPC/);
    expect(spool.journalStats!.appended).toBe(2);
    expect(readdirSync(spool.tmpDir)).toEqual([]);
    // A crash (the spool is dropped) and a power cut that loses the unsynced file of instance 1.
    await rm(kept);
    const again = await open();
    expect(again.replayed).toBe(1);
    expect(existsSync(kept)).toBe(true);
    expect(existsSync(again.instancePath(STUDY, SERIES, `${SERIES}.2`))).toBe(false);
  });

  it('group commit: commits that arrive while a sync runs share the next one', async () => {
    const spool = await open();
    const paths = await Promise.all(Array.from({ length: 20 }, (_, i) => spool.commitBuffers(ids(i + 1), instance(10_000), 10_000)));
    expect(new Set(paths).size).toBe(20);
    expect(spool.journalStats!.appended).toBe(20);
    expect(spool.journalStats!.syncs).toBeLessThanOrEqual(2);
  });

  it('an instance over the journal limit takes the classic commit (own fsync), as durable and in place', async () => {
    const paths: string[] = [];
    const spool = await open({ journalMaxInstanceBytes: 64 * 1024, onCommit: (p) => paths.push(p) });
    await spool.commitBuffers(ids(2), instance(1000), 1000);
    expect(spool.journalInstanceLimit).toBe(64 * 1024);
    const data = instance(200_000);
    const p = await spool.commitBuffers(ids(1), data, 200_000);
    expect((await readFile(p)).equals(whole(data))).toBe(true);
    expect(spool.journalStats!.appended).toBe(1);
    expect(paths).toEqual(['journal', 'classic']);
    expect(readdirSync(spool.tmpDir)).toEqual([]);
  });

  it('without a journal there is no memory commit limit and commitBuffers commits classically', async () => {
    const spool = new Spool(root);
    await spool.init();
    opened.push(spool);
    expect(spool.journalInstanceLimit).toBe(0);
    const data = instance(5000);
    expect((await readFile(await spool.commitBuffers(ids(1), data, 5000))).equals(whole(data))).toBe(true);
    expect(existsSync(join(root, 'journal'))).toBe(false);
  });

  it('syncFiles falls back to syncing each file and folder where `sync --file-system` is missing', async () => {
    const spool = await open();
    const p = await spool.commitBuffers(ids(1), instance(1000), 1000);
    // /dev/full cannot be fdatasynced (EINVAL): an error shows that a file was synced one by one.
    const files = [p, join(root, 'gone.dcm'), '/dev/full'];
    const dirs = [join(root, 'studies'), join(root, 'gone')];
    await expect(syncFiles(root, files, dirs)).resolves.toBeUndefined(); // syncfs: the list is not walked
    const path = process.env.PATH;
    process.env.PATH = join(root, 'no-such-bin'); // no `sync` to run: the fallback must do it
    try {
      await expect(syncFiles(root, files, dirs)).rejects.toThrow(/EINVAL/);
      // Paths gone since are skipped, real files and folders synced.
      await expect(syncFiles(root, files.slice(0, 2), dirs)).resolves.toBeUndefined();
    } finally {
      process.env.PATH = path;
    }
  });

  it('refuses a record larger than a quarter segment, and segments under 1 MiB', async () => {
    expect(() => new SpoolJournal({ dir: root, segmentBytes: 1000, persist: async () => undefined, replay: () => undefined })).toThrow(/at least 1 MiB/);
    const journal = new SpoolJournal({ dir: join(root, 'j'), segmentBytes: MiB, persist: async () => undefined, replay: () => undefined });
    await journal.open();
    try {
      expect(journal.maxRecord).toBeLessThan(MiB / 4);
      expect(() => journal.append('k', [Buffer.alloc(journal.maxRecord)], journal.maxRecord)).toThrow(JournalError);
      const t = journal.append('k', [Buffer.alloc(1000)], 1000);
      await t.durable;
      t.release();
    } finally {
      await journal.close();
    }
    expect(() => journal.append('k', [Buffer.alloc(10)], 10)).toThrow(/closed/);
  });
});

function segmentFiles(root: string): string[] {
  const dir = join(root, 'journal');
  return readdirSync(dir)
    .filter((n) => n.endsWith('.wal'))
    .map((n) => join(dir, n));
}

function segmentId(file: string): bigint {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(16);
  readSync(fd, b, 0, 16, 0);
  closeSync(fd);
  return b.readBigUInt64LE(8);
}

function keyLength(i: InstanceIds): number {
  return Buffer.byteLength(`${i.studyInstanceUID}/${i.seriesInstanceUID}/${i.sopInstanceUID}.dcm`);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}
