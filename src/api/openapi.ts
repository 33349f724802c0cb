/**
 * The OpenAPI 3.1 description of every HTTP route (`GET /api/docs/openapi.json`), and a small HTML page
 * listing the operations (`GET /api/docs`; nothing from a CDN: the service runs offline). Request and
 * document schemas come from the zod schemas the routes parse with, so the description cannot drift from
 * the validation. A unit test checks that every express route appears here.
 */
import { z } from 'zod';
import { ModelCardSchema } from '../inference/model-dir.js';
import { ResultSchema } from '../inference/result.js';
import { packageVersion } from '../version.js';
import { LabelInputSchema, LabelOutSchema, PutLabelsBodySchema, StackIdSchema, UidSchema } from './schemas.js';

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as Json;
  return rest;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json, description: string) => ({ description, content: { 'application/json': { schema } } });
const error = (description: string) => json(ref('Error'), description);
const studyParam = { name: 'studyUID', in: 'path', required: true, description: 'Study Instance UID', schema: jsonSchema(UidSchema) };
const OPEN: Json = { security: [] };

const E400 = error('invalid parameter or body; `error` names the field');
const E401 = error('missing or wrong bearer token (only when SAX_RANGE_API_TOKEN is set)');
const E503db = error('no database in this process');

/** Builds the document (`servers` is left to the client: the API is served wherever it is mounted). */
export function buildOpenApiDocument(): Json {
  const stackSummary = {
    type: 'object',
    properties: {
      stackId: { type: 'string' },
      processedAt: { type: 'string', format: 'date-time' },
      model: ref('ModelRef'),
      slices: { type: 'integer' },
      ED: ref('PhaseSummary'),
      ES: ref('PhaseSummary'),
    },
    required: ['stackId', 'processedAt', 'model', 'slices', 'ED', 'ES'],
  };
  const labelsResponse = {
    type: 'object',
    properties: { studyInstanceUID: { type: 'string' }, labels: { type: 'array', items: ref('Label') } },
    required: ['studyInstanceUID', 'labels'],
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'sax-range',
      version: packageVersion(),
      description:
        'Cardiac cine short-axis slice-range classification service. With SAX_RANGE_API_TOKEN set, every operation ' +
        'but those marked open needs `Authorization: Bearer <token>`. Errors are `{"error": "..."}`.',
    },
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] },
        Result: { ...jsonSchema(ResultSchema), description: 'sax-range/result@1 (DESIGN "Result JSON")' },
        ModelCard: { ...jsonSchema(ModelCardSchema), description: 'sax-range/model-card@1' },
        ModelRef: jsonSchema(ResultSchema.shape.model),
        PhaseSummary: {
          type: 'object',
          properties: { phaseIndex: { type: 'integer' }, inRange: jsonSchema(ResultSchema.shape.phases.shape.ED.shape.inRange) },
          required: ['phaseIndex', 'inRange'],
        },
        StackSummary: stackSummary,
        StudyListItem: {
          type: 'object',
          properties: {
            studyInstanceUID: { type: 'string' },
            processedAt: { type: ['string', 'null'], format: 'date-time', description: 'latest result saved; null while none' },
            lastReceivedAt: { type: ['string', 'null'], format: 'date-time', description: 'last instance received (tracker)' },
            instancesReceived: { type: ['integer', 'null'] },
            stacks: { type: 'array', items: ref('StackSummary') },
            humanLabels: { type: 'integer', description: 'number of human-confirmed labels' },
          },
          required: ['studyInstanceUID', 'processedAt', 'lastReceivedAt', 'instancesReceived', 'stacks', 'humanLabels'],
        },
        LabelInput: jsonSchema(LabelInputSchema, 'input'),
        PutLabelsBody: jsonSchema(PutLabelsBodySchema, 'input'),
        Label: jsonSchema(LabelOutSchema),
      },
    },
    security: [{ bearerAuth: [] }],
    tags: [
      { name: 'health', description: 'liveness and readiness (open)' },
      { name: 'studies', description: 'studies, results, reprocessing' },
      { name: 'labels', description: 'the labeller: per-slice labels, CSV export' },
      { name: 'viewer', description: 'pages and the images they show' },
      { name: 'ops', description: 'model card, metrics, queues, this document' },
    ],
    paths: {
      '/healthz': { get: { ...OPEN, tags: ['health'], operationId: 'healthz', summary: 'The process is alive', responses: { 200: json({ type: 'object' }, '`{status: "ok"}`') } } },
      '/readyz': {
        get: {
          ...OPEN,
          tags: ['health'],
          operationId: 'readyz',
          summary: 'Redis reachable, spool writable, model loaded (worker role)',
          responses: { 200: json({ type: 'object' }, 'ready, with the checks'), 503: json({ type: 'object' }, 'not ready, with the failing checks') },
        },
      },
      '/api/studies': {
        get: {
          tags: ['studies'],
          operationId: 'listStudies',
          summary: 'Studies newest first (results in the database merged with the studies the tracker knows)',
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
            { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
          ],
          responses: {
            200: json(
              {
                type: 'object',
                properties: { studies: { type: 'array', items: ref('StudyListItem') }, total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' } },
                required: ['studies', 'total', 'limit', 'offset'],
              },
              'one page of studies',
            ),
            400: E400,
            401: E401,
          },
        },
      },
      '/api/studies/{studyUID}': {
        get: {
          tags: ['studies'],
          operationId: 'getStudy',
          summary: 'What was received, the stacks, the jobs and the results of a study',
          parameters: [studyParam],
          responses: { 200: json({ type: 'object' }, 'the study'), 400: E400, 401: E401, 404: error('study known neither to the tracker nor by results') },
        },
      },
      '/api/studies/{studyUID}/results': {
        get: {
          tags: ['studies'],
          operationId: 'getResults',
          summary: 'The result documents of a study, one per stack',
          parameters: [studyParam],
          responses: { 200: json({ type: 'array', items: ref('Result') }, 'result documents (empty array when none)'), 400: E400, 401: E401 },
        },
      },
      '/api/studies/{studyUID}/reprocess': {
        post: {
          tags: ['studies'],
          operationId: 'reprocessStudy',
          summary: 'Schedules the study for classification again',
          parameters: [studyParam],
          responses: { 202: json({ type: 'object' }, 'scheduled'), 400: E400, 401: E401, 503: error('needs the scp role in this process') },
        },
      },
      '/api/studies/{studyUID}/labels': {
        get: {
          tags: ['labels'],
          operationId: 'getLabels',
          summary: "Labels of a study's slices: the model's (pre-labels from each result) and the human ones",
          parameters: [studyParam],
          responses: { 200: json(labelsResponse, 'labels ordered by stackId, phase, index'), 400: E400, 401: E401, 503: E503db },
        },
        put: {
          tags: ['labels'],
          operationId: 'putLabels',
          summary: 'Upserts labels (source defaults to human)',
          description:
            'Each label names a slice of a classified stack of the study: `index` is the slice `index` of the result document, ' +
            'and `sopInstanceUID` must be that slice’s (400 otherwise). Unique per (stackId, phase, index); a later PUT replaces.',
          parameters: [studyParam],
          requestBody: { required: true, content: { 'application/json': { schema: ref('PutLabelsBody') } } },
          responses: {
            200: json({ type: 'object', properties: { saved: { type: 'integer' }, labels: { type: 'array', items: ref('Label') } }, required: ['saved', 'labels'] }, 'saved'),
            400: E400,
            401: E401,
            503: E503db,
          },
        },
      },
      '/api/labels.csv': {
        get: {
          tags: ['labels'],
          operationId: 'exportLabelsCsv',
          summary: 'Human-confirmed labels as CSV: SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source',
          description: 'The first two columns are what a `dicom:DIR` dataset reads (labels.csv with SOPInstanceUID,label). `slice` is the result document’s slice `index`.',
          parameters: [{ name: 'study', in: 'query', required: false, description: 'only this study', schema: jsonSchema(UidSchema) }],
          responses: { 200: { description: 'CSV with a header line', content: { 'text/csv': { schema: { type: 'string' } } } }, 400: E400, 401: E401, 503: E503db },
        },
      },
      '/api/model': {
        get: {
          tags: ['ops'],
          operationId: 'getModel',
          summary: 'The model card of the configured model',
          responses: { 200: json(ref('ModelCard'), 'the card'), 401: E401, 404: error('no model configured'), 503: error('card unreadable') },
        },
      },
      '/metrics': {
        get: {
          tags: ['ops'],
          operationId: 'metrics',
          summary: 'Prometheus metrics (text exposition format)',
          responses: { 200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } }, 401: E401 },
        },
      },
      '/admin/queues': { get: { tags: ['ops'], operationId: 'bullBoard', summary: 'bull-board: the queues and their jobs (HTML UI and its own API below this path)', responses: { 200: { description: 'HTML' }, 401: E401 } } },
      '/api/docs': { get: { ...OPEN, tags: ['ops'], operationId: 'docsPage', summary: 'This description as an HTML list (open)', responses: { 200: { description: 'HTML', content: { 'text/html': {} } } } } },
      '/api/docs/openapi.json': { get: { ...OPEN, tags: ['ops'], operationId: 'openApiDocument', summary: 'This document (open)', responses: { 200: json({ type: 'object' }, 'OpenAPI 3.1') } } },
      '/': { get: { ...OPEN, tags: ['viewer'], operationId: 'viewerPage', summary: 'The viewer page (a shell: its data comes from the API with the token)', responses: { 200: { description: 'HTML', content: { 'text/html': {} } } } } },
      '/label': { get: { ...OPEN, tags: ['viewer'], operationId: 'labellerPage', summary: 'The labeller page (a shell, like the viewer)', responses: { 200: { description: 'HTML', content: { 'text/html': {} } } } } },
      '/web/{file}': {
        get: {
          ...OPEN,
          tags: ['viewer'],
          operationId: 'pageAsset',
          summary: 'Static files of the pages (scripts, styles)',
          parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: 'the file' }, 404: { description: 'no such file' } },
        },
      },
      '/api/config/ui': { get: { tags: ['viewer'], operationId: 'uiConfig', summary: 'Settings the pages need (the public Orthanc URL, when configured)', responses: { 200: json({ type: 'object' }, 'settings'), 401: E401 } } },
      '/api/studies/{studyUID}/stacks': {
        get: {
          tags: ['viewer'],
          operationId: 'getStudyStacks',
          summary: 'The stacks of a study as the viewer shows them',
          parameters: [studyParam],
          responses: { 200: json({ type: 'object' }, 'stacks'), 400: E400, 401: E401, 404: error('not known') },
        },
      },
      '/api/studies/{studyUID}/stacks/{stackId}/{phase}/{file}': {
        get: {
          tags: ['viewer'],
          operationId: 'getSliceImage',
          summary: 'A slice as PNG (`file` = `<index>.png`, the result document’s slice index); `?overlay=cam` for the Grad-CAM',
          parameters: [
            studyParam,
            { name: 'stackId', in: 'path', required: true, schema: jsonSchema(StackIdSchema) },
            { name: 'phase', in: 'path', required: true, schema: { type: 'string', enum: ['ED', 'ES'] } },
            { name: 'file', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9]+\\.png$' } },
            { name: 'overlay', in: 'query', required: false, schema: { type: 'string', enum: ['cam'] } },
          ],
          responses: { 200: { description: 'PNG', content: { 'image/png': {} } }, 400: E400, 401: E401, 404: error('no such slice or image') },
        },
      },
    },
  };
}

/** Operations of the document as `[method, path, summary]`, in document order. */
export function listOperations(doc: Json): Array<{ method: string; path: string; summary: string; open: boolean }> {
  const out: Array<{ method: string; path: string; summary: string; open: boolean }> = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(item)) {
      out.push({ method: method.toUpperCase(), path, summary: String(op.summary ?? ''), open: Array.isArray(op.security) && op.security.length === 0 });
    }
  }
  return out;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The HTML page of `/api/docs`: every operation with its summary, and a link to the JSON. */
export function docsPage(doc: Json): string {
  const info = doc.info as { title: string; version: string; description: string };
  const rows = listOperations(doc)
    .map((o) => `<tr><td><code>${o.method}</code></td><td><code>${escapeHtml(o.path)}</code></td><td>${escapeHtml(o.summary)}${o.open ? ' <em>(open)</em>' : ''}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)} API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}td{padding:.2em .8em;vertical-align:top;border-bottom:1px solid #ddd}code{white-space:nowrap}</style>
</head><body>
<h1>${escapeHtml(info.title)} API <small>${escapeHtml(info.version)}</small></h1>
<p>${escapeHtml(info.description)}</p>
<p>Machine-readable: <a href="/api/docs/openapi.json">openapi.json</a> (OpenAPI 3.1).</p>
<table><thead><tr><th>method</th><th>path</th><th>what</th></tr></thead><tbody>
${rows}
</tbody></table>
</body></html>
`;
}
