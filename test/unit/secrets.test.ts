/**
 * Secrets only from the environment or files (`*_FILE`), never from the JSON config file; secret and key files
 * must not be accessible by group/other; TLS/HTTPS settings come in complete pairs.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'sax-range-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(content: string, mode: number): string {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

describe('secrets', () => {
  it('reads SAX_RANGE_API_TOKEN_FILE and ORTHANC_PASSWORD_FILE (mode 0600/0400), dropping one trailing newline', () => {
    const c = loadConfig({ env: { SAX_RANGE_API_TOKEN_FILE: file('s3cret-token\n', 0o600), ORTHANC_PASSWORD_FILE: file('pw with spaces ', 0o400) } });
    expect(c.apiToken).toBe('s3cret-token');
    expect(c.orthancPassword).toBe('pw with spaces ');
  });

  it('refuses a secret file readable by group or other, naming the variable, the file and the mode', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601]) {
      const p = file('token', mode);
      expect(() => loadConfig({ env: { SAX_RANGE_API_TOKEN_FILE: p } })).toThrow(ConfigError);
      expect(() => loadConfig({ env: { SAX_RANGE_API_TOKEN_FILE: p } })).toThrow(
        new RegExp(`SAX_RANGE_API_TOKEN_FILE.*${p}.*group/other \\(mode 0${mode.toString(8)}\\)`),
      );
    }
    expect(() => loadConfig({ env: { ORTHANC_PASSWORD_FILE: file('pw', 0o644) } })).toThrow(/ORTHANC_PASSWORD_FILE.*group\/other/);
  });

  it('refuses a missing or empty secret file, and a secret given both ways', () => {
    expect(() => loadConfig({ env: { SAX_RANGE_API_TOKEN_FILE: join(dir, 'nope') } })).toThrow(/cannot read .*ENOENT/);
    expect(() => loadConfig({ env: { SAX_RANGE_API_TOKEN_FILE: file('\n', 0o600) } })).toThrow(/is empty/);
    expect(() => loadConfig({ env: { SAX_RANGE_API_TOKEN: 'a', SAX_RANGE_API_TOKEN_FILE: file('b', 0o600) } })).toThrow(/not both/);
  });

  it('refuses secrets in the JSON config file (environment or *_FILE only)', () => {
    const cfg = file(JSON.stringify({ aeTitle: 'X', apiToken: 'in-the-file' }), 0o644);
    expect(() => loadConfig({ file: cfg, env: {} })).toThrow(/holds the secret apiToken: set SAX_RANGE_API_TOKEN or SAX_RANGE_API_TOKEN_FILE/);
    const cfg2 = file(JSON.stringify({ orthancPassword: 'x' }), 0o600);
    expect(() => loadConfig({ file: cfg2, env: {} })).toThrow(/orthancPassword/);
    // The file's *_FILE keys are fine: they name a file, they hold no secret.
    const cfg3 = file(JSON.stringify({ apiTokenFile: file('tok', 0o600) }), 0o644);
    expect(loadConfig({ file: cfg3, env: {} }).apiToken).toBe('tok');
  });
});

describe('TLS and HTTPS settings', () => {
  const cert = file('-----BEGIN CERTIFICATE-----\n', 0o644);
  it('refuses a private key readable by group/other, for DICOM TLS and for HTTPS', () => {
    const key = file('key', 0o644);
    expect(() => loadConfig({ env: { SAX_RANGE_TLS_CERT: cert, SAX_RANGE_TLS_KEY: key } })).toThrow(/tlsKeyFile \(SAX_RANGE_TLS_KEY\).*group\/other/);
    expect(() => loadConfig({ env: { SAX_RANGE_HTTPS_CERT: cert, SAX_RANGE_HTTPS_KEY: key } })).toThrow(/httpsKeyFile \(SAX_RANGE_HTTPS_KEY\).*group\/other/);
    const ok = file('key', 0o600);
    const c = loadConfig({ env: { SAX_RANGE_TLS_CERT: cert, SAX_RANGE_TLS_KEY: ok, SAX_RANGE_HTTPS_CERT: cert, SAX_RANGE_HTTPS_KEY: ok } });
    expect(c.tlsKeyFile).toBe(ok);
    expect(c.httpsKeyFile).toBe(ok);
  });

  it('wants certificate and key together, and a CA for required client certificates', () => {
    expect(() => loadConfig({ env: { SAX_RANGE_TLS_CERT: cert } })).toThrow(/tlsCertFile.*and tlsKeyFile.*go together/);
    expect(() => loadConfig({ env: { SAX_RANGE_HTTPS_KEY: file('k', 0o600) } })).toThrow(/go together/);
    const key = file('key', 0o600);
    expect(() => loadConfig({ env: { SAX_RANGE_TLS_CERT: cert, SAX_RANGE_TLS_KEY: key, SAX_RANGE_TLS_REQUIRE_CLIENT_CERT: 'true' } })).toThrow(/needs tlsCaFile/);
    expect(() => loadConfig({ env: { SAX_RANGE_TLS_CA: cert } })).toThrow(/needs tlsCertFile/);
    expect(() => loadConfig({ env: { SAX_RANGE_TLS_CERT: join(dir, 'missing'), SAX_RANGE_TLS_KEY: key } })).toThrow(/cannot read .*certificate/);
  });

  it('reads SAX_RANGE_TLS_REQUIRE_CLIENT_CERT as a boolean', () => {
    const key = file('key', 0o600);
    const base = { SAX_RANGE_TLS_CERT: cert, SAX_RANGE_TLS_KEY: key, SAX_RANGE_TLS_CA: cert };
    expect(loadConfig({ env: { ...base, SAX_RANGE_TLS_REQUIRE_CLIENT_CERT: 'false' } }).tlsRequireClientCert).toBe(false);
    expect(loadConfig({ env: { ...base, SAX_RANGE_TLS_REQUIRE_CLIENT_CERT: '1' } }).tlsRequireClientCert).toBe(true);
    expect(() => loadConfig({ env: { ...base, SAX_RANGE_TLS_REQUIRE_CLIENT_CERT: 'maybe' } })).toThrow(/SAX_RANGE_TLS_REQUIRE_CLIENT_CERT/);
    expect(loadConfig({ env: {} }).tlsRequireClientCert).toBe(false);
  });
});
