import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type Redis } from '../../src/queue/redis.js';
import { SeriesTracker } from '../../src/tracker/tracker.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('SeriesTracker (real Redis)', () => {
  let redis: Redis;
  const prefix = `test-${randomUUID()}`;
  /** Each test its own key space, so that due() sees only its studies. */
  const fresh = () => `${prefix}:${randomUUID()}`;

  beforeAll(() => {
    redis = createRedis(REDIS_URL);
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('makes a study due only after stableMs without new instances, across series', async () => {
    const t = new SeriesTracker(redis, { prefix: fresh(), stableMs: 1000 });
    const study = '1.2.3.100';
    await t.touch({ studyInstanceUID: study, seriesInstanceUID: '1.2.3.100.1', sopInstanceUID: '1.2.3.100.1.1' }, 10_000);
    await t.touch({ studyInstanceUID: study, seriesInstanceUID: '1.2.3.100.2', sopInstanceUID: '1.2.3.100.2.1' }, 10_500);
    expect(await t.due(11_000)).toEqual([]);
    expect(await t.due(11_499)).toEqual([]);
    expect(await t.due(11_500)).toEqual([{ studyInstanceUID: study, epoch: 11_500 }]);
    const state = await t.get(study);
    expect(state?.instancesReceived).toBe(2);
    expect(state?.series).toEqual(['1.2.3.100.1', '1.2.3.100.2']);
  });

  it('counts a resent SOP instance once', async () => {
    const t = new SeriesTracker(redis, { prefix: fresh(), stableMs: 1000 });
    const ids = { studyInstanceUID: '1.2.3.200', seriesInstanceUID: '1.2.3.200.1', sopInstanceUID: '1.2.3.200.1.1' };
    await t.touch(ids, 1);
    await t.touch(ids, 2);
    expect((await t.get('1.2.3.200'))?.instancesReceived).toBe(1);
  });

  it('lets exactly one of several racing nodes claim a due study', async () => {
    const shared = fresh();
    const a = new SeriesTracker(redis, { prefix: shared, stableMs: 100 });
    const b = new SeriesTracker(createRedis(REDIS_URL), { prefix: shared, stableMs: 100 });
    const study = '1.2.3.300';
    await a.touch({ studyInstanceUID: study, seriesInstanceUID: '1.2.3.300.1', sopInstanceUID: '1.2.3.300.1.1' }, 0);
    const [due] = await a.due(1000);
    const wins = await Promise.all([a.claim(study, due!.epoch), b.claim(study, due!.epoch), a.claim(study, due!.epoch)]);
    expect(wins.filter(Boolean)).toHaveLength(1);
    expect(await a.due(1000)).toEqual([]);
    (b as any).redis.disconnect();
  });

  it('does not let a node claim a study that received an instance after it looked', async () => {
    const t = new SeriesTracker(redis, { prefix: fresh(), stableMs: 100 });
    const study = '1.2.3.400';
    await t.touch({ studyInstanceUID: study, seriesInstanceUID: '1.2.3.400.1', sopInstanceUID: '1.2.3.400.1.1' }, 0);
    const [due] = await t.due(1000);
    await t.touch({ studyInstanceUID: study, seriesInstanceUID: '1.2.3.400.1', sopInstanceUID: '1.2.3.400.1.2' }, 950);
    expect(await t.claim(study, due!.epoch)).toBe(false);
    expect(await t.due(1000)).toEqual([]);
    expect(await t.due(1050)).toEqual([{ studyInstanceUID: study, epoch: 1050 }]);
  });

  it('keeps its state in Redis: a new tracker object (a restarted node) sees it', async () => {
    const shared = fresh();
    const t1 = new SeriesTracker(redis, { prefix: shared, stableMs: 100 });
    await t1.touch({ studyInstanceUID: '1.2.3.500', seriesInstanceUID: '1.2.3.500.1', sopInstanceUID: '1.2.3.500.1.1' }, 0);
    const t2 = new SeriesTracker(redis, { prefix: shared, stableMs: 100 });
    expect(await t2.due(200)).toEqual([{ studyInstanceUID: '1.2.3.500', epoch: 100 }]);
    expect(await t2.studies()).toContain('1.2.3.500');
  });
});
