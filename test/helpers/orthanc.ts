import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './dcmtk.js';

export interface OrthancHandle {
  url: string;
  httpPort: number;
  dicomPort: number;
  aeTitle: string;
  auth: { username: string; password: string };
  /** Authenticated fetch against the REST API; throws on non-2xx. */
  api<T = unknown>(path: string, init?: { method?: string; body?: unknown; raw?: boolean }): Promise<T>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * Starts a real Orthanc (Debian's /usr/sbin/Orthanc) on free loopback ports with a temp database.
 * TCP_NODELAY=1 in its environment: Orthanc's DCMTK only disables Nagle when it is set.
 */
export async function startOrthanc(dir: string, extra: Record<string, unknown> = {}): Promise<OrthancHandle> {
  const httpPort = typeof extra.HttpPort === 'number' ? extra.HttpPort : await freePort();
  const dicomPort = typeof extra.DicomPort === 'number' ? extra.DicomPort : await freePort();
  const db = join(dir, 'db');
  await mkdir(db, { recursive: true });
  const auth = { username: 'ci', password: 'ci-secret' };
  const config = {
    Name: 'OrthancTest',
    StorageDirectory: db,
    IndexDirectory: db,
    Plugins: [],
    HttpServerEnabled: true,
    HttpPort: httpPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [auth.username]: auth.password },
    DicomServerEnabled: true,
    DicomAet: 'ORTHANC',
    DicomPort: dicomPort,
    DicomCheckCalledAet: false,
    DicomAlwaysAllowEcho: true,
    DicomAlwaysAllowStore: true,
    DicomScuTimeout: 30,
    StableAge: 2,
    SaveJobs: false,
    OverwriteInstances: true,
    OrthancExplorerEnabled: false,
    WebDavEnabled: false,
    MetricsEnabled: false,
    ...extra,
  };
  const configPath = join(dir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const url = `http://127.0.0.1:${httpPort}`;
  const authHeader = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  let child: ChildProcess | undefined;
  const log: string[] = [];

  const api = async <T>(path: string, init: { method?: string; body?: unknown; raw?: boolean } = {}): Promise<T> => {
    const body =
      init.body === undefined ? undefined : init.body instanceof Uint8Array ? init.body : JSON.stringify(init.body);
    const res = await fetch(`${url}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers: { authorization: authHeader }, body });
    if (!res.ok) throw new Error(`Orthanc ${init.method ?? 'GET'} ${path}: ${res.status} ${await res.text()}`);
    if (init.raw) return new Uint8Array(await res.arrayBuffer()) as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  };

  const start = async () => {
    child = spawn('/usr/sbin/Orthanc', [configPath], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => log.push(String(d)));
    child.stderr!.on('data', (d) => log.push(String(d)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await api('/system');
        return;
      } catch {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`Orthanc did not start:\n${log.join('').slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((res) => {
      c.once('exit', () => res());
      c.kill('SIGTERM');
      setTimeout(() => c.kill('SIGKILL'), 5000).unref();
    });
  };
  await start();
  return { url, httpPort, dicomPort, aeTitle: 'ORTHANC', auth, api, stop, start };
}
