import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config.js';
import { createRedis } from '../../src/queue/redis.js';

/** A service config for tests: ephemeral ports, its own data folder and Redis key prefix, 1 s stable time. */
export function testServiceConfig(root: string, overrides: Partial<Config> = {}): Config {
  return loadConfig({
    env: {},
    overrides: {
      dataDir: join(root, `data-${randomUUID().slice(0, 8)}`),
      dicomPort: 0,
      httpPort: 0,
      stableSeconds: 1,
      queuePrefix: `test-${randomUUID()}`,
      backend: 'wasm',
      inferenceThreads: 1,
      redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      ...overrides,
    },
  });
}

/** Removes every Redis key of a test service (its queues and tracker state). */
export async function removeServiceKeys(config: Config): Promise<void> {
  const redis = createRedis(config.redisUrl);
  const keys = await redis.keys(`${config.queuePrefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
}
