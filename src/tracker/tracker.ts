import type { Redis } from 'ioredis';

export interface StudyState {
  studyInstanceUID: string;
  instancesReceived: number;
  series: string[];
  firstSeen?: number;
  lastSeen?: number;
  /** When the study becomes ready if nothing else arrives (ms since 1970); absent once claimed. */
  readyAt?: number;
  lastJobId?: string;
  jobIds: string[];
  /** JSON summary of the last assembly (stacks, set-aside series). */
  assembly?: unknown;
}

/**
 * Series tracker: a study is ready when none of its series has received anything for `stableMs`.
 *
 * State lives in Redis so that several SCP/worker nodes share it: per study a hash (counts, times, last job),
 * a set of series, a set of SOP Instance UIDs (a resent instance is not counted twice), and one sorted set
 * `pending` scored by the time the study becomes ready. Every stored instance pushes that time forward.
 * A node that sees a study due claims it with a conditional ZREM (atomic): exactly one node wins, and a
 * study that received something in the meantime (a new score) is not claimed.
 */
export class SeriesTracker {
  private readonly k: string;

  constructor(
    private readonly redis: Redis,
    private readonly opts: { prefix: string; stableMs: number },
  ) {
    this.k = `${opts.prefix}:tracker`;
  }

  private studyKey(uid: string) {
    return `${this.k}:study:${uid}`;
  }

  /** Records a durably stored instance. Cheap: one pipelined round trip. */
  async touch(ids: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }, now = Date.now()): Promise<void> {
    const key = this.studyKey(ids.studyInstanceUID);
    await this.redis
      .multi()
      .hsetnx(key, 'firstSeen', String(now))
      .hset(key, 'lastSeen', String(now))
      .sadd(`${key}:series`, ids.seriesInstanceUID)
      .sadd(`${key}:sops`, ids.sopInstanceUID)
      .zadd(`${this.k}:pending`, String(now + this.opts.stableMs), ids.studyInstanceUID)
      .sadd(`${this.k}:studies`, ids.studyInstanceUID)
      .exec();
  }

  /** Makes a study due again after `stableMs` (restart recovery, reprocess). Keeps a later existing time. */
  async schedule(studyInstanceUID: string, now = Date.now(), delayMs = this.opts.stableMs): Promise<void> {
    await this.redis
      .multi()
      // GT: a later ready time already set wins; a study not pending is added.
      .zadd(`${this.k}:pending`, 'GT', String(now + delayMs), studyInstanceUID)
      .sadd(`${this.k}:studies`, studyInstanceUID)
      .exec();
  }

  /** Studies whose quiet period has passed, with the score that identifies this quiet epoch. */
  async due(now = Date.now(), limit = 50): Promise<Array<{ studyInstanceUID: string; epoch: number }>> {
    const flat = await this.redis.zrangebyscore(`${this.k}:pending`, '-inf', String(now), 'WITHSCORES', 'LIMIT', 0, limit);
    const out: Array<{ studyInstanceUID: string; epoch: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ studyInstanceUID: flat[i]!, epoch: Number(flat[i + 1]) });
    return out;
  }

  /** Claims a due study for this node: true only if its ready time is still `epoch` (nothing arrived since). */
  async claim(studyInstanceUID: string, epoch: number): Promise<boolean> {
    const res = await this.redis.eval(
      `local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
       if s and tonumber(s) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]); return 1 end
       return 0`,
      1,
      `${this.k}:pending`,
      studyInstanceUID,
      String(epoch),
    );
    return res === 1;
  }

  /** Records a job of the study (classify with its assembly summary; export without). */
  async recordJob(studyInstanceUID: string, jobId: string, assembly?: unknown): Promise<void> {
    const key = this.studyKey(studyInstanceUID);
    const m = this.redis.multi();
    if (assembly !== undefined) m.hset(key, 'lastJobId', jobId, 'assembly', JSON.stringify(assembly));
    await m.rpush(`${key}:jobs`, jobId).exec();
  }

  async recordAssembly(studyInstanceUID: string, assembly: unknown): Promise<void> {
    await this.redis.hset(this.studyKey(studyInstanceUID), 'assembly', JSON.stringify(assembly));
  }

  async isPending(studyInstanceUID: string): Promise<boolean> {
    return (await this.redis.zscore(`${this.k}:pending`, studyInstanceUID)) !== null;
  }

  async get(studyInstanceUID: string): Promise<StudyState | undefined> {
    const key = this.studyKey(studyInstanceUID);
    const [[, h], [, series], [, count], [, jobs], [, readyAt]] = (await this.redis
      .multi()
      .hgetall(key)
      .smembers(`${key}:series`)
      .scard(`${key}:sops`)
      .lrange(`${key}:jobs`, 0, -1)
      .zscore(`${this.k}:pending`, studyInstanceUID)
      .exec()) as Array<[Error | null, any]>;
    const hash = h as Record<string, string>;
    if (!hash || Object.keys(hash).length === 0) return undefined;
    return {
      studyInstanceUID,
      instancesReceived: Number(count),
      series: (series as string[]).sort(),
      firstSeen: hash.firstSeen ? Number(hash.firstSeen) : undefined,
      lastSeen: hash.lastSeen ? Number(hash.lastSeen) : undefined,
      readyAt: readyAt !== null && readyAt !== undefined ? Number(readyAt) : undefined,
      lastJobId: hash.lastJobId,
      jobIds: jobs as string[],
      assembly: hash.assembly ? JSON.parse(hash.assembly) : undefined,
    };
  }

  /** Known studies (most recent first is the API's job; this is unordered). */
  async studies(): Promise<string[]> {
    return this.redis.smembers(`${this.k}:studies`);
  }
}
