import { describe, expect, it } from 'vitest';
import { BadParameterError, parseSliceImageParams } from '../../src/api/images.js';
import { orthancExplorerUrl, orthancId, publicOrthancUrl } from '../../src/api/orthanc-ids.js';

describe('orthancId', () => {
  it('is the SHA-1 of the identifying tags joined with | in five groups of eight hex digits', () => {
    // sha1("PAT-1|1.2.3"), computed independently (Python hashlib).
    expect(orthancId('PAT-1', '1.2.3')).toBe('f0c67011-2e6fca25-6ec7687d-2811429c-5e5a3d0c');
    expect(orthancId('PAT-1', '1.2.3')).toMatch(/^([0-9a-f]{8}-){4}[0-9a-f]{8}$/);
  });

  it('links to Orthanc Explorer pages', () => {
    expect(orthancExplorerUrl('http://pacs:8042/', 'instance', 'abc')).toBe('http://pacs:8042/app/explorer.html#instance?uuid=abc');
  });
});

describe('publicOrthancUrl', () => {
  it('drops credentials, query and fragment, and refuses what is not http(s)', () => {
    expect(publicOrthancUrl('http://user:secret@pacs.local:8042/orthanc/?x=1#y')).toBe('http://pacs.local:8042/orthanc');
    expect(publicOrthancUrl('https://pacs.local')).toBe('https://pacs.local');
    expect(publicOrthancUrl('file:///etc/passwd')).toBeUndefined();
    expect(publicOrthancUrl('not a url')).toBeUndefined();
    expect(publicOrthancUrl(undefined)).toBeUndefined();
  });
});

describe('parseSliceImageParams', () => {
  const ok = { studyUID: '1.2.840.1', stackId: '4e730eb7d583ffcc', phase: 'ES', file: '12.png' };

  it('accepts a study UID, a stack id, ED/ES and <index>.png, with an optional overlay=cam', () => {
    expect(parseSliceImageParams(ok, {})).toEqual({ studyUID: '1.2.840.1', stackId: '4e730eb7d583ffcc', phase: 'ES', index: 12 });
    expect(parseSliceImageParams({ ...ok, file: '0.png' }, { overlay: 'cam' })).toEqual({ studyUID: '1.2.840.1', stackId: '4e730eb7d583ffcc', phase: 'ES', index: 0, overlay: 'cam' });
  });

  it.each([
    [{ studyUID: '1.2.x' }, {}, /studyUID/],
    [{ studyUID: `1.${'2'.repeat(70)}` }, {}, /studyUID/],
    [{ stackId: '../etc' }, {}, /stackId/],
    [{ phase: 'ed' }, {}, /phase/],
    [{ file: '01.png' }, {}, /index/],
    [{ file: '-1.png' }, {}, /index/],
    [{ file: '3.jpg' }, {}, /index/],
    [{ file: '123456.png' }, {}, /index/],
    [{}, { overlay: 'heat' }, /overlay/],
    [{}, { overlay: ['cam', 'cam'] }, /overlay/],
  ])('rejects %o %o', (params, query, message) => {
    expect(() => parseSliceImageParams({ ...ok, ...params }, query)).toThrow(BadParameterError);
    expect(() => parseSliceImageParams({ ...ok, ...params }, query)).toThrow(message);
  });
});
