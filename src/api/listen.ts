/**
 * Starts the HTTP API: plain HTTP, or HTTPS when `httpsCertFile`/`httpsKeyFile` are set (the key's mode is
 * checked by loadConfig). Resolves once listening.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Config } from '../config.js';

export type ApiServer = HttpServer | HttpsServer;

export function listenApi(app: RequestListener, config: Pick<Config, 'httpPort' | 'httpHost' | 'httpsCertFile' | 'httpsKeyFile'>): Promise<ApiServer> {
  const server: ApiServer =
    config.httpsCertFile && config.httpsKeyFile
      ? createHttpsServer({ cert: readFileSync(config.httpsCertFile), key: readFileSync(config.httpsKeyFile), minVersion: 'TLSv1.2' }, app)
      : createHttpServer(app);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.httpPort, config.httpHost, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
