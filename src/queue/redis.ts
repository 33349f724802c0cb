import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';

/** Where Redis is: a URL, or Sentinels that name the current master (the URL then only gives the password/db). */
export interface RedisTarget {
  url: string;
  /** `host:port` of each Sentinel. */
  sentinels?: string[];
  /** The master group the Sentinels watch. */
  sentinelName?: string;
}

/** The Redis target of a service config. */
export function redisTarget(config: { redisUrl: string; redisSentinels?: string[]; redisSentinelName: string }): RedisTarget {
  return { url: config.redisUrl, sentinels: config.redisSentinels, sentinelName: config.redisSentinelName };
}

function hostPort(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`Redis Sentinel address "${s}" is not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * A Redis connection as BullMQ wants it for workers and blocking calls (maxRetriesPerRequest: null). With
 * Sentinels, ioredis asks them for the master and follows a failover (docs/deployment.md).
 */
export function createRedis(target: string | RedisTarget, name = 'sax-range', logger?: Logger): Redis {
  const redis = connect(typeof target === 'string' ? { url: target } : target, name);
  if (logger) {
    // ioredis reconnects by itself and queues commands meanwhile; say so once per outage, not per retry.
    let down = false;
    redis.on('error', (err: Error & { code?: string }) => {
      if (!down) logger.warn({ connection: name, err: err.message, code: err.code }, 'redis connection error');
      down = true;
    });
    redis.on('ready', () => {
      if (down) logger.info({ connection: name }, 'redis connection back');
      down = false;
    });
  }
  return redis;
}

function connect(t: RedisTarget, name: string): Redis {
  const base: RedisOptions = { maxRetriesPerRequest: null, enableReadyCheck: true, connectionName: name, lazyConnect: false };
  if (!t.sentinels?.length) return new Redis(t.url, base);
  const u = new URL(t.url);
  return new Redis({
    ...base,
    sentinels: t.sentinels.map(hostPort),
    name: t.sentinelName ?? 'mymaster',
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
  });
}

export type { Redis };
