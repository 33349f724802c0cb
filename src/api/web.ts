/**
 * The viewer (`/`) and the labeller (`/label`): static HTML, CSS and ES modules from `src/api/web/`, no
 * framework and nothing fetched from elsewhere (the pages work offline, inside a hospital network).
 *
 * The pages are shells without data: they are served without the bearer token (a browser cannot add an
 * Authorization header to a navigation), and every datum they show comes from the API with the token
 * (taken from `?token=` or asked for, kept in sessionStorage).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express from 'express';

/**
 * The folder of the page files: next to this module (`src/api/web/`, or `dist/api/web/` when the build
 * copies it), else the source folder seen from `dist/api/` (the build compiles TypeScript only).
 */
export function webRoot(): string {
  const candidates = [new URL('./web/', import.meta.url), new URL('../../src/api/web/', import.meta.url)].map((u) => fileURLToPath(u));
  const found = candidates.find((d) => existsSync(`${d}index.html`));
  if (!found) throw new Error(`the viewer's page files are missing (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Pages allow only their own scripts, styles and API; images also from blob: (slice images are fetched
 * with the token and shown as object URLs).
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function createPagesRouter(root: string = webRoot()): express.Router {
  const router = express.Router();
  const page = (file: string) => (_req: express.Request, res: express.Response) => {
    res.set({ 'Content-Security-Policy': PAGE_CSP, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' });
    res.sendFile(file, { root });
  };
  router.get('/', page('index.html'));
  router.get('/label', page('label.html'));
  router.use(
    '/web',
    express.static(root, {
      index: false,
      // Revalidated on every load (ETag): a new version of the service is picked up at once.
      setHeaders: (res) => {
        res.setHeader('Cache-Control', 'no-cache');
        res.setHeader('X-Content-Type-Options', 'nosniff');
      },
    }),
  );
  router.use('/web', (_req, res) => {
    res.status(404).type('text').send('not found');
  });
  return router;
}
