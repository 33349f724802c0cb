import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { buildOpenApiDocument, docsPage, listOperations } from '../../src/api/openapi.js';
import { createLogger } from '../../src/log.js';

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
  rawPath?: unknown;
  slash?: boolean;
}

/** Every route of an express 5 app as `METHOD /path`, through routers mounted without a path. */
function expressRoutes(stack: Layer[], prefix = ''): string[] {
  const out: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
      for (const p of paths) for (const [m, on] of Object.entries(layer.route.methods)) if (on && m !== '_all') out.push(`${m.toUpperCase()} ${prefix}${p}`);
    } else if (!layer.slash && typeof layer.rawPath === 'string' && layer.rawPath !== '/') {
      // Something mounted at a path (bull-board's app under /admin/queues, static files under /web) is one
      // opaque entry, `GET /prefix/*`: the document must describe something at or below that path.
      out.push(`GET ${prefix}${layer.rawPath}/*`);
    } else if (layer.handle.stack) {
      out.push(...expressRoutes(layer.handle.stack, prefix));
    }
  }
  return out;
}

/** `/api/studies/:studyUID` → `/api/studies/{studyUID}`. */
const toOpenApiPath = (p: string) => p.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');

/** Whether the route `METHOD /path` (or `METHOD /prefix/*`) covers the document's operation on `docPath`. */
function covers(route: string, method: string, docPath: string): boolean {
  const [m, p] = route.split(' ') as [string, string];
  if (m !== method.toUpperCase()) return false;
  if (p.endsWith('/*')) return docPath === p.slice(0, -2) || docPath.startsWith(p.slice(0, -1));
  return toOpenApiPath(p) === docPath;
}

describe('OpenAPI document', () => {
  const doc = buildOpenApiDocument();
  const app = createApp({
    // Building the app touches none of these: the routes are only listed here.
    tracker: {} as never,
    redis: {} as never,
    queues: [],
    resultsDir: '/nonexistent/results',
    spoolDir: '/nonexistent/spool/studies',
    logger: createLogger('test', 'silent'),
    apiToken: 'secret',
  });
  const routes = expressRoutes((app as unknown as { router: { stack: Layer[] } }).router.stack);

  it('is OpenAPI 3.1 with bearer security', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components).toMatchObject({ securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } });
  });

  it('finds the routes of the app (the walk itself works)', () => {
    for (const r of ['GET /healthz', 'GET /api/studies', 'PUT /api/studies/:studyUID/labels', 'GET /api/labels.csv', 'GET /metrics', 'GET /admin/queues/*']) {
      expect(routes).toContain(r);
    }
  });

  it('describes every express route with its method', () => {
    const ops = listOperations(doc);
    const missing = routes.filter((r) => !ops.some((o) => covers(r, o.method, o.path)));
    expect(missing).toEqual([]);
  });

  it('lists no operation the app does not serve', () => {
    const extra = listOperations(doc).filter((o) => !routes.some((r) => covers(r, o.method, o.path)));
    expect(extra).toEqual([]);
  });

  it('the HTML page lists each operation and links to the JSON, with nothing from elsewhere', () => {
    const html = docsPage(doc);
    expect(html).toContain('href="/api/docs/openapi.json"');
    expect(html).toContain('<code>PUT</code></td><td><code>/api/studies/{studyUID}/labels</code>');
    expect(html).not.toMatch(/https?:\/\//);
  });
});
