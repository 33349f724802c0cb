/**
 * The receiver side of bench/ingest.ts, in its own process so that its peak RSS is its own.
 * Usage: node [--cpu-prof] bench/ingest-receiver.js <spoolDir> [--pdu N] [--classic | --no-fsync] [--stock]
 * The spool is the service's: with the journal (default segment size from the config schema); --classic: without
 * it (every instance syncs its own file and folder); --no-fsync: the bench-only spool below.
 * (bench/ingest.ts compiles it first; `node --import tsx bench/ingest-receiver.ts …` works too, with ~50 MB more RSS).
 * --stock: dcmjs-dimse's own PDU path (fastPath: false), for the before/after comparison.
 * Prints `READY <port>` when listening; on SIGTERM closes gracefully and prints one JSON line:
 * {"maxRssKB":…, "cpuMs":…, "stats":{…}} (CPU: user + system of the whole process, start-up included).
 */
import { rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { DicomReceiver } from '../src/scp/receiver.js';
import { Spool } from '../src/spool/spool.js';
import { createLogger } from '../src/log.js';
import { ConfigSchema } from '../src/config.js';

/**
 * Bench-only spool WITHOUT fsync (neither file nor directory): what storescp does. Used to separate the cost of
 * the protocol path from the cost of durability; never used by the service.
 */
class NoSyncSpool extends Spool {
  override async commit(
    tmpPath: string,
    ids: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string },
    handle?: FileHandle,
  ): Promise<string> {
    await handle?.close();
    const finalPath = this.instancePath(ids.studyInstanceUID, ids.seriesInstanceUID, ids.sopInstanceUID);
    await mkdir(join(this.studyDir(ids.studyInstanceUID), ids.seriesInstanceUID), { recursive: true });
    await rename(tmpPath, finalPath);
    return finalPath;
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dir = args[0];
  if (!dir) throw new Error('usage: ingest-receiver.ts <spoolDir> [--pdu N] [--no-fsync]');
  const pduIdx = args.indexOf('--pdu');
  const maxPduLength = pduIdx >= 0 ? Number(args[pduIdx + 1]) : 262144;
  const journalSegmentBytes = args.includes('--classic') ? 0 : ConfigSchema.parse({}).spoolJournalMiB * 1024 * 1024;
  const spool = args.includes('--no-fsync') ? new NoSyncSpool(dir) : new Spool(dir, { journalSegmentBytes });
  await spool.init();
  const receiver = new DicomReceiver({
    config: { aeTitle: 'SAXRANGE', dicomPort: 0, allowedAEs: ['*'], maxInstanceBytes: 512 * 1024 * 1024, maxAssociations: 8, maxPduLength },
    spool,
    logger: createLogger('bench-receiver', process.env.LOG_LEVEL ?? 'warn'),
    host: '127.0.0.1',
    onStored: async () => undefined,
    fastPath: !args.includes('--stock'),
  });
  const port = await receiver.listen();
  process.stdout.write(`READY ${port}\n`);
  process.once('SIGTERM', () => {
    void receiver.close().then(() => {
      const ru = process.resourceUsage();
      void spool.close().then(() => {
        process.stdout.write(`${JSON.stringify({ maxRssKB: ru.maxRSS, cpuMs: (ru.userCPUTime + ru.systemCPUTime) / 1000, stats: receiver.stats, journal: spool.journalStats })}\n`);
        process.exit(0);
      });
    });
  });
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
