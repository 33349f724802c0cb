import express from 'express';
import { buildOpenApiDocument, docsPage } from './openapi.js';

/**
 * `GET /api/docs` (HTML list of the operations) and `GET /api/docs/openapi.json`. Open, like the pages: the
 * description holds no data, and a browser cannot send the bearer token on a navigation.
 */
export function createDocsRouter(): express.Router {
  const router = express.Router();
  const doc = buildOpenApiDocument();
  const html = docsPage(doc);
  router.get('/api/docs/openapi.json', (_req, res) => {
    res.json(doc);
  });
  router.get('/api/docs', (_req, res) => {
    res.set({ 'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'", 'X-Content-Type-Options': 'nosniff' });
    res.type('html').send(html);
  });
  return router;
}
