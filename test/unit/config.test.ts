import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('loadConfig', () => {
  it('uses the documented defaults with an empty environment', () => {
    const c = loadConfig({ env: {} });
    expect(c.aeTitle).toBe('SAXRANGE');
    expect(c.dicomPort).toBe(11112);
    expect(c.httpPort).toBe(8080);
    expect(c.stableSeconds).toBe(10);
    expect(c.roles).toEqual(['scp', 'worker', 'api']);
    expect(c.allowedAEs).toEqual(['*']);
    expect(c.queuePrefix).toBe('sax-range');
  });

  it('lets every key be overridden by its environment variable', () => {
    const c = loadConfig({
      env: { SAX_RANGE_AE_TITLE: 'OTHER', SAX_RANGE_DICOM_PORT: '104', SAX_RANGE_ROLES: 'worker', SAX_RANGE_ALLOWED_AES: 'A, B' },
    });
    expect(c.aeTitle).toBe('OTHER');
    expect(c.dicomPort).toBe(104);
    expect(c.roles).toEqual(['worker']);
    expect(c.allowedAEs).toEqual(['A', 'B']);
  });

  it('names the field and its variable when a value is invalid', () => {
    expect(() => loadConfig({ env: { SAX_RANGE_DICOM_PORT: 'x' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { SAX_RANGE_DICOM_PORT: '70000' } })).toThrow(/dicomPort \(SAX_RANGE_DICOM_PORT\)/);
    expect(() => loadConfig({ env: { SAX_RANGE_ROLES: 'scp,printer' } })).toThrow(/roles/);
    expect(() => loadConfig({ env: { SAX_RANGE_AE_TITLE: 'WAY-TOO-LONG-AE-TITLE' } })).toThrow(/aeTitle/);
  });
});

describe('API exposure (DESIGN: without a token the API is open on loopback only)', () => {
  it('refuses a non-loopback HTTP host without a token, and names the way out', () => {
    expect(() => loadConfig({ env: { SAX_RANGE_HTTP_HOST: '0.0.0.0' } })).toThrow(/httpHost \(SAX_RANGE_HTTP_HOST\) is 0\.0\.0\.0.*SAX_RANGE_API_TOKEN/);
    expect(() => loadConfig({ env: { SAX_RANGE_HTTP_HOST: '10.1.2.3' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { SAX_RANGE_HTTP_HOST: '::' } })).toThrow(ConfigError);
  });

  it('allows it with a token or on loopback, whatever the roles (every process serves at least /metrics)', () => {
    expect(loadConfig({ env: { SAX_RANGE_HTTP_HOST: '0.0.0.0', SAX_RANGE_API_TOKEN: 's3cret' } }).httpHost).toBe('0.0.0.0');
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]']) {
      expect(loadConfig({ env: { SAX_RANGE_HTTP_HOST: host } }).httpHost).toBe(host);
    }
    expect(() => loadConfig({ env: { SAX_RANGE_HTTP_HOST: '0.0.0.0', SAX_RANGE_ROLES: 'worker' } })).toThrow(ConfigError);
    expect(loadConfig({ env: { SAX_RANGE_HTTP_HOST: '0.0.0.0', SAX_RANGE_ROLES: 'worker', SAX_RANGE_API_TOKEN: 't' } }).roles).toEqual(['worker']);
  });
});
