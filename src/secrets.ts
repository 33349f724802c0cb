/**
 * Secrets and key material: the API token, the Orthanc password and the TLS private keys.
 *
 * Rules (checked at start-up by loadConfig; a violation stops start-up with a ConfigError naming the key,
 * its variable and the file):
 * - A secret comes from the environment (`SAX_RANGE_API_TOKEN`, `ORTHANC_PASSWORD`) or from a file named by
 *   its `*_FILE` variant (`SAX_RANGE_API_TOKEN_FILE`, `ORTHANC_PASSWORD_FILE`; config keys `apiTokenFile`,
 *   `orthancPasswordFile`), never from the JSON config file (config files get copied, committed, shared).
 *   Setting both the value and its file is refused. A trailing newline in the file is dropped; an empty
 *   file is refused.
 * - A secret file or private key file must not be readable, writable or executable by group or other
 *   (`mode & 0o077` must be 0): `chmod 600 FILE`.
 * - TLS: a key needs its certificate and vice versa; requiring client certificates needs a CA file.
 */
import { readFileSync, statSync } from 'node:fs';

export class SecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretError';
  }
}

/** Throws when `path` is missing or readable by group/other. */
export function checkPrivateFile(path: string, what: string): void {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new SecretError(`${what} ${path} is not a regular file`);
    mode = st.mode;
  } catch (err) {
    if (err instanceof SecretError) throw err;
    throw new SecretError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new SecretError(`${what} ${path} is accessible by group/other (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
  }
}

/** Reads a secret file: permissions checked, one trailing newline removed, must not be empty. */
export function readSecretFile(path: string, what: string): string {
  checkPrivateFile(path, what);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SecretError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value.length === 0) throw new SecretError(`${what} ${path} is empty`);
  return value;
}

/** Throws when a (public) file such as a certificate cannot be read. */
export function checkReadableFile(path: string, what: string): void {
  try {
    readFileSync(path);
  } catch (err) {
    throw new SecretError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
