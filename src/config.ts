import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { checkPrivateFile, checkReadableFile, readSecretFile, SecretError } from './secrets.js';

const csv = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean));

const aeTitle = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[\x20-\x5b\x5d-\x7e]+$/, 'AE titles are 1–16 printable ASCII characters without backslash');

const port = z.coerce.number().int().min(0).max(65535);

/** A boolean that also reads 'true'/'false'/'1'/'0'/'yes'/'no' (environment variables). */
const bool = z.preprocess((v) => {
  if (typeof v !== 'string') return v;
  const t = v.trim().toLowerCase();
  return ['1', 'true', 'yes'].includes(t) ? true : ['0', 'false', 'no'].includes(t) ? false : v;
}, z.boolean());

export const ROLES = ['scp', 'worker', 'api'] as const;
export type Role = (typeof ROLES)[number];

/** The whole configuration. Every key has a default and an environment variable (see ENV_KEYS). */
export const ConfigSchema = z.object({
  aeTitle: aeTitle.default('SAXRANGE'),
  dicomPort: port.default(11112),
  httpPort: port.default(8080),
  httpHost: z.string().default('127.0.0.1'),
  dataDir: z.string().default('./data'),
  /** Calling AE titles allowed to associate; ['*'] = any. */
  allowedAEs: csv.default(['*']),
  stableSeconds: z.coerce.number().min(0).default(10),
  modelDir: z.string().default('models/default'),
  roles: csv.pipe(z.array(z.enum(ROLES)).min(1)).default(['scp', 'worker', 'api']),
  queuePrefix: z.string().min(1).default('sax-range'),
  apiToken: z.string().optional(),
  /** File holding the API token (mode 0600 or stricter); the secure alternative to apiToken. */
  apiTokenFile: z.string().optional(),
  export: z.enum(['rest', 'dimse', 'none']).default('none'),
  redisUrl: z.string().default('redis://127.0.0.1:6379'),
  orthancUrl: z.string().optional(),
  orthancUsername: z.string().optional(),
  orthancPassword: z.string().optional(),
  orthancPasswordFile: z.string().optional(),
  orthancAeTitle: z.string().optional(),
  orthancHost: z.string().optional(),
  orthancDicomPort: port.optional(),
  databaseUrl: z.string().optional(),
  /** Largest accepted instance in bytes. */
  maxInstanceBytes: z.coerce.number().int().positive().default(512 * 1024 * 1024),
  /**
   * Spool journal segment size in MiB (src/spool/journal.ts): instances up to 2 MiB are made durable by one sync
   * of a preallocated journal file instead of syncing their own file and folder. 0 = no journal.
   */
  spoolJournalMiB: z.coerce.number().int().min(0).max(4096).refine((v) => v === 0 || v >= 4, 'spoolJournalMiB: 0 (off) or at least 4').default(32),
  maxAssociations: z.coerce.number().int().positive().default(32),
  maxPduLength: z.coerce.number().int().min(4096).default(262144),
  /** Concurrency of the classify worker in one process. */
  workerConcurrency: z.coerce.number().int().positive().default(1),
  /** Inference threads per worker process (worker_threads, one tfjs backend each); 1 = in-process, 0 = one per core. */
  inferenceThreads: z.coerce.number().int().min(0).default(0),
  /** A classify job's lock: a worker that stops renewing it (crashed, killed) loses the job after this long. */
  jobLockMs: z.coerce.number().int().min(1000).default(30000),
  /** How often each worker looks for jobs whose lock expired (stalled) and puts them back in the queue. */
  stalledIntervalMs: z.coerce.number().int().min(500).default(30000),
  /** Redis Sentinel nodes (`host:port,…`); when set, REDIS_URL is ignored but for its password. */
  redisSentinels: csv.optional(),
  /** The master group name the Sentinels watch. */
  redisSentinelName: z.string().default('mymaster'),
  /** tensorflow.js backend: auto takes tfjs-node when installed, else WebGPU when an adapter exists, else WASM. */
  backend: z.enum(['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  /** DICOM TLS (src/scp/tls.ts): PEM certificate and key (key mode 0600) turn the DICOM port into TLS only. */
  tlsCertFile: z.string().optional(),
  tlsKeyFile: z.string().optional(),
  /** PEM CA bundle that client certificates must chain to. */
  tlsCaFile: z.string().optional(),
  /** Refuse DICOM TLS clients without a certificate from tlsCaFile. */
  tlsRequireClientCert: bool.default(false),
  /** HTTPS for the API: PEM certificate and key (key mode 0600); unset = plain HTTP. */
  httpsCertFile: z.string().optional(),
  httpsKeyFile: z.string().optional(),
});

export type Config = z.infer<typeof ConfigSchema>;

/** Environment variable for each config key. */
export const ENV_KEYS: Record<keyof Config, string> = {
  aeTitle: 'SAX_RANGE_AE_TITLE',
  dicomPort: 'SAX_RANGE_DICOM_PORT',
  httpPort: 'SAX_RANGE_HTTP_PORT',
  httpHost: 'SAX_RANGE_HTTP_HOST',
  dataDir: 'SAX_RANGE_DATA_DIR',
  allowedAEs: 'SAX_RANGE_ALLOWED_AES',
  stableSeconds: 'SAX_RANGE_STABLE_SECONDS',
  modelDir: 'SAX_RANGE_MODEL_DIR',
  roles: 'SAX_RANGE_ROLES',
  queuePrefix: 'SAX_RANGE_QUEUE_PREFIX',
  apiToken: 'SAX_RANGE_API_TOKEN',
  apiTokenFile: 'SAX_RANGE_API_TOKEN_FILE',
  export: 'SAX_RANGE_EXPORT',
  redisUrl: 'REDIS_URL',
  orthancUrl: 'ORTHANC_URL',
  orthancUsername: 'ORTHANC_USERNAME',
  orthancPassword: 'ORTHANC_PASSWORD',
  orthancPasswordFile: 'ORTHANC_PASSWORD_FILE',
  orthancAeTitle: 'ORTHANC_AE_TITLE',
  orthancHost: 'ORTHANC_HOST',
  orthancDicomPort: 'ORTHANC_DICOM_PORT',
  databaseUrl: 'DATABASE_URL',
  maxInstanceBytes: 'SAX_RANGE_MAX_INSTANCE_BYTES',
  spoolJournalMiB: 'SAX_RANGE_SPOOL_JOURNAL_MIB',
  maxAssociations: 'SAX_RANGE_MAX_ASSOCIATIONS',
  maxPduLength: 'SAX_RANGE_MAX_PDU_LENGTH',
  workerConcurrency: 'SAX_RANGE_WORKER_CONCURRENCY',
  inferenceThreads: 'SAX_RANGE_INFERENCE_THREADS',
  jobLockMs: 'SAX_RANGE_JOB_LOCK_MS',
  stalledIntervalMs: 'SAX_RANGE_STALLED_INTERVAL_MS',
  redisSentinels: 'SAX_RANGE_REDIS_SENTINELS',
  redisSentinelName: 'SAX_RANGE_REDIS_SENTINEL_NAME',
  backend: 'SAX_RANGE_BACKEND',
  tlsCertFile: 'SAX_RANGE_TLS_CERT',
  tlsKeyFile: 'SAX_RANGE_TLS_KEY',
  tlsCaFile: 'SAX_RANGE_TLS_CA',
  tlsRequireClientCert: 'SAX_RANGE_TLS_REQUIRE_CLIENT_CERT',
  httpsCertFile: 'SAX_RANGE_HTTPS_CERT',
  httpsKeyFile: 'SAX_RANGE_HTTPS_KEY',
};

/** Secrets: never in the JSON config file; from the environment or their `*_FILE` (see src/secrets.ts). */
const SECRETS = [
  { key: 'apiToken', file: 'apiTokenFile' },
  { key: 'orthancPassword', file: 'orthancPasswordFile' },
] as const;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Loads the config: file (--config or SAX_RANGE_CONFIG, JSON with the keys of ConfigSchema), then the
 * environment on top, then validation. An invalid value stops start-up with the field named.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Config> } = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.SAX_RANGE_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file) {
    try {
      raw = JSON.parse(readFileSync(resolve(file), 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  for (const { key } of SECRETS) {
    if (raw[key] !== undefined) {
      throw new ConfigError(`config file ${file} holds the secret ${key}: set ${ENV_KEYS[key]} or ${ENV_KEYS[SECRETS.find((s) => s.key === key)!.file]} instead`);
    }
  }
  for (const [key, name] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  Object.assign(raw, opts.overrides ?? {});
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const envName = (ENV_KEYS as Record<string, string>)[key];
    throw new ConfigError(`invalid config ${key}${envName ? ` (${envName})` : ''}: ${issue.message}`);
  }
  const config = resolveSecrets(parsed.data);
  if (config.apiToken === undefined && !isLoopbackHost(config.httpHost)) {
    // DESIGN: without a token the API is open on loopback only (every process serves HTTP: src/api/ops.ts).
    throw new ConfigError(
      `${named('httpHost')} is ${config.httpHost}, not a loopback address, and no API token is set: set ${named('apiToken')} or ${named('apiTokenFile')}, or bind to 127.0.0.1`,
    );
  }
  return config;
}

/** 127.0.0.0/8, ::1 and localhost: the hosts an API without a token may bind to. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

const named = (key: keyof Config) => `${key} (${ENV_KEYS[key]})`;

/** Reads the `*_FILE` secrets and checks the key material (files, permissions, pairs). */
function resolveSecrets(config: Config): Config {
  const out = { ...config };
  try {
    for (const { key, file } of SECRETS) {
      const path = out[file];
      if (path === undefined) continue;
      if (out[key] !== undefined) throw new ConfigError(`set ${named(key)} or ${named(file)}, not both`);
      out[key] = readSecretFile(path, `${named(file)}: file`);
    }
    for (const [cert, key] of [
      ['tlsCertFile', 'tlsKeyFile'],
      ['httpsCertFile', 'httpsKeyFile'],
    ] as const) {
      if ((out[cert] === undefined) !== (out[key] === undefined)) throw new ConfigError(`${named(cert)} and ${named(key)} go together`);
      if (out[key] !== undefined) {
        checkPrivateFile(out[key], `${named(key)}: private key`);
        checkReadableFile(out[cert]!, `${named(cert)}: certificate`);
      }
    }
    if (out.tlsCaFile !== undefined) {
      if (out.tlsCertFile === undefined) throw new ConfigError(`${named('tlsCaFile')} needs ${named('tlsCertFile')} and ${named('tlsKeyFile')}`);
      checkReadableFile(out.tlsCaFile, `${named('tlsCaFile')}: CA file`);
    }
    if (out.tlsRequireClientCert && out.tlsCaFile === undefined) throw new ConfigError(`${named('tlsRequireClientCert')} needs ${named('tlsCaFile')}`);
  } catch (err) {
    if (err instanceof SecretError) throw new ConfigError(`invalid config: ${err.message}`);
    throw err;
  }
  return out;
}
