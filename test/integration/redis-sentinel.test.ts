import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createRedis, redisTarget, type Redis } from '../../src/queue/redis.js';
import { SeriesTracker } from '../../src/tracker/tracker.js';
import { freePort } from '../helpers/dcmtk.js';
import { until } from '../helpers/wait.js';

/**
 * A Redis that must not be a single point of failure sits behind Sentinels; the service then asks them for
 * the master (SAX_RANGE_REDIS_SENTINELS). A real redis-server in sentinel mode watches the local Redis here.
 */
let root: string;
let sentinel: ChildProcess;
let port: number;
const clients: Redis[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-sentinel-'));
  port = await freePort();
  const conf = join(root, 'sentinel.conf');
  await writeFile(conf, `port ${port}\nbind 127.0.0.1\ndir ${root}\nsentinel monitor saxtest 127.0.0.1 6379 1\n`);
  sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const probe = createRedis(`redis://127.0.0.1:${port}`);
  probe.on('error', () => undefined); // refused until the sentinel is up
  clients.push(probe);
  await until('sentinel answering', async () => ((await probe.call('SENTINEL', 'get-master-addr-by-name', 'saxtest').catch(() => null)) as string[] | null) ?? undefined, 20_000);
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  sentinel?.kill('SIGTERM');
  await rm(root, { recursive: true, force: true });
});

describe('Redis through Sentinel', () => {
  it('config keys give a connection to the master the Sentinels name; tracker and queues work over it', async () => {
    const config = loadConfig({
      env: { SAX_RANGE_REDIS_SENTINELS: `127.0.0.1:${port}`, SAX_RANGE_REDIS_SENTINEL_NAME: 'saxtest', REDIS_URL: 'redis://unused.invalid:1' },
    });
    expect(config.redisSentinels).toEqual([`127.0.0.1:${port}`]);
    const redis = createRedis(redisTarget(config), 'sentinel-test');
    clients.push(redis);
    expect(await redis.ping()).toBe('PONG');
    // It reached the real master (the local Redis on 6379), not the URL's host.
    const info = await redis.info('server');
    expect(info).toMatch(/tcp_port:6379/);

    const prefix = `test-sentinel-${randomUUID()}`;
    const tracker = new SeriesTracker(redis, { prefix, stableMs: 0 });
    await tracker.touch({ studyInstanceUID: '2.25.1', seriesInstanceUID: '2.25.1.1', sopInstanceUID: '2.25.1.1.1' });
    expect((await tracker.get('2.25.1'))?.instancesReceived).toBe(1);
    const q = new Queue('classify', { connection: redis, prefix });
    await q.add('x', { a: 1 }, { jobId: 'j1' });
    expect((await q.getJob('j1'))?.data).toEqual({ a: 1 });
    await q.obliterate({ force: true });
    await q.close();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
  });

  it('a Sentinel address that is not host:port is a clear error', () => {
    expect(() => createRedis({ url: 'redis://127.0.0.1:6379', sentinels: ['nohost'] })).toThrow(/Sentinel address "nohost" is not host:port/);
  });
});
