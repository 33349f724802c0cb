import { describe, expect, it } from 'vitest';
import {
  buildResult,
  parseResult,
  RESULT_SCHEMA_ID,
  ResultSchema,
  ResultValidationError,
  type Result,
  type ResultInput,
} from '../../src/inference/result.js';

const uid = (n: number) => `1.2.826.0.1.3680043.8.498.${n}`;

function input(): ResultInput {
  const probs = [
    [0.9, 0.08, 0.02],
    [0.4, 0.55, 0.05],
    [0.05, 0.9, 0.05],
    [0.1, 0.3, 0.6], // argmax OBS but between IN slices: decoding keeps it IN
    [0.02, 0.9, 0.08],
    [0.01, 0.09, 0.9],
  ];
  const slices = probs.map((p, i) => ({ index: 5 - i, position: 50 - 8 * i, sopInstanceUID: uid(100 + i), probabilities: p }));
  return {
    studyInstanceUID: uid(1),
    stackId: 'stack-abc',
    seriesInstanceUIDs: [uid(2)],
    model: { id: 'cbr-compact-acdc', version: '1.0.0', sha256: 'f'.repeat(64) },
    order: { direction: 'apex-to-base', method: 'geometry', geometryAgrees: true, margin: 12.5 },
    phases: {
      ED: { phaseIndex: 0, triggerTime: 12.5, method: 'min-trigger-time', slices },
      ES: { phaseIndex: 9, method: 'min-blood-pool-area', slices: slices.map((s, i) => ({ ...s, sopInstanceUID: uid(200 + i) })) },
    },
    timings: { inferenceMs: 123.456 },
  };
}

describe('buildResult', () => {
  it('builds a document with the contract fields that validates', () => {
    const doc = buildResult(input());
    expect(Object.keys(doc)).toEqual(['schema', 'studyInstanceUID', 'stackId', 'seriesInstanceUIDs', 'model', 'order', 'phases', 'outputs', 'timings']);
    expect(doc.schema).toBe(RESULT_SCHEMA_ID);
    const ed = doc.phases.ED;
    expect(Object.keys(ed)).toEqual(['phaseIndex', 'triggerTime', 'method', 'slices', 'inRange']);
    expect(Object.keys(ed.slices[0])).toEqual(['index', 'position', 'sopInstanceUID', 'probabilities', 'predicted', 'label']);
    expect(ed.slices.map((s) => s.predicted)).toEqual(['OAP', 'IN', 'IN', 'OBS', 'IN', 'OBS']);
    expect(ed.slices.map((s) => s.label)).toEqual(['OAP', 'IN', 'IN', 'IN', 'IN', 'OBS']);
    expect(ed.inRange).toEqual({ first: 1, last: 4, count: 4, firstSopInstanceUID: uid(101), lastSopInstanceUID: uid(104) });
    expect(ed.slices[0].probabilities).toEqual({ OAP: 0.9, IN: 0.08, OBS: 0.02 });
    expect(doc.phases.ES.triggerTime).toBeNull();
    expect(doc.phases.ES.inRange.firstSopInstanceUID).toBe(uid(201));
    expect(doc.outputs).toEqual([]);
    expect(doc.timings).toEqual({ inferenceMs: 123.5 });
    // Round trip through JSON.
    expect(parseResult(JSON.parse(JSON.stringify(doc)))).toEqual(doc);
  });

  it('accepts the documented outputs and order extras', () => {
    const doc = buildResult({
      ...input(),
      order: { direction: 'apex-to-base', method: 'likelihood', geometryAgrees: null, margin: 3, message: 'geometry ambiguous' },
      outputs: [
        { kind: 'sr', sopInstanceUID: uid(7), seriesInstanceUID: uid(8), path: 'out/sr.dcm' },
        { kind: 'kos', sopInstanceUID: uid(9), seriesInstanceUID: uid(10) },
      ],
    });
    expect(doc.outputs).toHaveLength(2);
    expect(doc.order.method).toBe('likelihood');
  });
});

describe('ResultSchema', () => {
  const good = (): Result => JSON.parse(JSON.stringify(buildResult(input())));
  const fails = (mutate: (d: any) => void): ResultValidationError => {
    const d = good();
    mutate(d);
    try {
      parseResult(d);
    } catch (err) {
      expect(err).toBeInstanceOf(ResultValidationError);
      return err as ResultValidationError;
    }
    throw new Error('expected the document to fail validation');
  };

  it('names a missing or misspelt field', () => {
    expect(fails((d) => delete d.stackId).message).toMatch(/stackId/);
    const e = fails((d) => {
      d.phases.ED.slices[2].sopInstanceUid = d.phases.ED.slices[2].sopInstanceUID;
      delete d.phases.ED.slices[2].sopInstanceUID;
    });
    expect(e.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['phases.ED.slices[2].sopInstanceUID', 'phases.ED.slices[2]']));
    expect(e.message).toMatch(/sopInstanceUid/);
  });

  it('names wrong values: schema id, label, probability, direction, output kind, sha256', () => {
    expect(fails((d) => (d.schema = 'sax-range/result@2')).issues[0].path).toBe('schema');
    expect(fails((d) => (d.phases.ES.slices[0].predicted = 'APEX')).issues[0].path).toBe('phases.ES.slices[0].predicted');
    expect(fails((d) => (d.phases.ED.slices[1].probabilities.IN = 1.5)).issues[0].path).toBe('phases.ED.slices[1].probabilities.IN');
    expect(fails((d) => (d.order.direction = 'base-to-apex')).issues[0].path).toBe('order.direction');
    expect(fails((d) => d.outputs.push({ kind: 'seg', sopInstanceUID: uid(1), seriesInstanceUID: uid(2) })).issues[0].path).toBe('outputs[0].kind');
    expect(fails((d) => (d.model.sha256 = 'abc')).issues[0].path).toBe('model.sha256');
    expect(fails((d) => (d.studyInstanceUID = 'not-a-uid')).issues[0].path).toBe('studyInstanceUID');
  });

  it('checks the range against the slices', () => {
    expect(fails((d) => (d.phases.ED.inRange.count = 3)).issues[0].path).toBe('phases.ED.inRange.count');
    expect(fails((d) => (d.phases.ED.inRange.lastSopInstanceUID = uid(105))).issues[0].path).toBe('phases.ED.inRange.lastSopInstanceUID');
    expect(fails((d) => (d.phases.ES.inRange.last = 9)).issues[0].path).toBe('phases.ES.inRange.last');
    expect(fails((d) => (d.phases.ED.slices[0].label = 'IN')).issues[0].path).toBe('phases.ED.slices[0].label');
  });

  it('is a zod schema usable by API consumers', () => {
    expect(ResultSchema.safeParse(good()).success).toBe(true);
    expect(ResultSchema.safeParse({}).success).toBe(false);
  });
});
