import { Redis } from 'ioredis';

/**
 * A Redis connection as BullMQ wants it for workers and blocking calls (maxRetriesPerRequest: null).
 * ioredis also takes Sentinel and Cluster set-ups (see docs/deployment.md).
 */
export function createRedis(url: string, name = 'sax-range'): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, connectionName: name, lazyConnect: false });
}

export type { Redis };
