import { describe, expect, it } from 'vitest';
import { AssociationError } from '../../src/export/dimse-scu.js';
import { classifyExportFailure, ExportError, isDimseSuccess } from '../../src/export/errors.js';

const netErr = (code: string) => Object.assign(new Error(`connect ${code}`), { code });
/** What axios throws for an HTTP error answer. */
const httpErr = (status: number, data?: unknown) => Object.assign(new Error(`Request failed with status code ${status}`), { isAxiosError: true, response: { status, data } });

describe('classifyExportFailure', () => {
  it.each([
    ['ECONNREFUSED', 'EXPORT_NETWORK', true],
    ['ECONNRESET', 'EXPORT_NETWORK', true],
    ['EHOSTUNREACH', 'EXPORT_NETWORK', true],
    ['ETIMEDOUT', 'EXPORT_TIMEOUT', true],
    ['ECONNABORTED', 'EXPORT_TIMEOUT', true],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'EXPORT_TLS', false],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'EXPORT_TLS', false],
    ['EPROTO', 'EXPORT_TLS', false],
  ])('network error %s → %s (retryable %s)', (code, expected, retryable) => {
    const e = classifyExportFailure(netErr(code));
    expect(e).toBeInstanceOf(ExportError);
    expect(e.code).toBe(expected);
    expect(e.retryable).toBe(retryable);
  });

  it.each([
    [400, 'EXPORT_REJECTED', false],
    [401, 'EXPORT_AUTH', false],
    [403, 'EXPORT_AUTH', false],
    [404, 'EXPORT_REJECTED', false],
    [413, 'EXPORT_REJECTED', false],
    [408, 'EXPORT_TIMEOUT', true],
    [429, 'EXPORT_BUSY', true],
    [500, 'EXPORT_SERVER_ERROR', true],
    [502, 'EXPORT_SERVER_ERROR', true],
    [503, 'EXPORT_BUSY', true],
    [504, 'EXPORT_TIMEOUT', true],
  ])('HTTP %i → %s (retryable %s)', (status, expected, retryable) => {
    const e = classifyExportFailure(httpErr(status));
    expect([e.code, e.retryable, e.httpStatus]).toEqual([expected, retryable, status]);
  });

  it("carries Orthanc's error text", () => {
    const e = classifyExportFailure(httpErr(400, { HttpError: 'Bad Request', OrthancError: 'Bad file format', Message: 'Bad file format' }));
    expect(e.message).toBe('HTTP 400: Bad file format');
  });

  it.each([
    [0xa700, 'EXPORT_DIMSE_OUT_OF_RESOURCES', true],
    [0xa7ff, 'EXPORT_DIMSE_OUT_OF_RESOURCES', true],
    [0x0213, 'EXPORT_DIMSE_OUT_OF_RESOURCES', true],
    [0x0110, 'EXPORT_DIMSE_FAILURE', true],
    [0x0122, 'EXPORT_DIMSE_FAILURE', false],
    [0x0124, 'EXPORT_DIMSE_FAILURE', false],
    [0xa900, 'EXPORT_DIMSE_FAILURE', false],
    [0xc000, 'EXPORT_DIMSE_FAILURE', false],
    [0xcfff, 'EXPORT_DIMSE_FAILURE', false],
    [0x0111, 'EXPORT_DIMSE_DUPLICATE', false],
  ])('DIMSE status %i → %s (retryable %s)', (status, expected, retryable) => {
    const e = classifyExportFailure(status);
    expect([e.code, e.retryable, e.dimseStatus]).toEqual([expected, retryable, status]);
    // The same through a dimse-scu StoreOutcome.
    const o = classifyExportFailure({ path: '/x.dcm', status, errorComment: 'disk full' });
    expect([o.code, o.retryable]).toEqual([expected, retryable]);
    expect(o.message).toContain('disk full');
  });

  it('refuses to classify Success, Warning and Pending statuses', () => {
    for (const s of [0x0000, 0xb000, 0xb007, 0xff00]) {
      expect(isDimseSuccess(s)).toBe(true);
      expect(() => classifyExportFailure(s)).toThrow(RangeError);
    }
    expect(isDimseSuccess(0xa700)).toBe(false);
  });

  it('keeps the retryable flag of an AssociationError, also across process boundaries (by name)', () => {
    expect(classifyExportFailure(new AssociationError('network error: ECONNREFUSED', true))).toMatchObject({ code: 'EXPORT_ASSOCIATION', retryable: true });
    expect(classifyExportFailure(new AssociationError('association rejected', false))).toMatchObject({ code: 'EXPORT_ASSOCIATION', retryable: false });
    const plain = Object.assign(new Error('rejected'), { name: 'AssociationError', retryable: false });
    expect(classifyExportFailure(plain).retryable).toBe(false);
  });

  it('returns an ExportError as it is and treats the unknown as permanent', () => {
    const e = new ExportError('EXPORT_BUSY', 'busy', { retryable: true });
    expect(classifyExportFailure(e)).toBe(e);
    expect(classifyExportFailure(new TypeError('x is undefined'))).toMatchObject({ code: 'EXPORT_UNKNOWN', retryable: false });
    expect(classifyExportFailure('boom')).toMatchObject({ code: 'EXPORT_UNKNOWN', retryable: false });
    expect(classifyExportFailure(Object.assign(new Error('timeout of 30000ms exceeded'), { code: 'ECONNABORTED' }))).toMatchObject({
      code: 'EXPORT_TIMEOUT',
      retryable: true,
    });
  });
});
