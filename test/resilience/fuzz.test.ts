import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';
import { notes } from '../helpers/notes.ts';
import { scale } from './load.ts';

interface Operation {
  method: string;
  path: string;
}

describe('fuzzing every route', () => {
  let t: TestApp;
  let admin: string;
  let operations: Operation[];
  beforeAll(async () => {
    t = await buildTestApp({
      env: { RATE_LIMIT_MAX_REQUESTS: '1000000', RATE_LIMIT_WINDOW_MS: '1000' },
      extend: notes(),
    });
    admin = (await createKey(t.app, ['admin'])).key;
    await request(t.app.server).post('/v1/notes').set('x-api-key', admin).send({ name: 'seed' });
    // Every documented route, straight from the OpenAPI document the app generates.
    const doc = (await request(t.app.server).get('/openapi.json')).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => ({ method: method.toUpperCase(), path })),
    );
  });
  afterAll(() => t.close());

  it('when the OpenAPI document is read, then it lists the API routes', () => {
    const paths = operations.map((o) => `${o.method} ${o.path}`);
    expect(paths).toEqual(
      expect.arrayContaining([
        'POST /v1/notes',
        'PATCH /v1/notes/{id}',
        'DELETE /v1/api-keys/{id}',
        'GET /ready',
      ]),
    );
  });

  const segment = fc.oneof(
    fc.uuid(),
    fc.string({ maxLength: 40 }),
    fc.stringMatching(/^[0-9a-f]{16}$/),
    fc.constantFrom('..', '%00', '%2e%2e', "' OR 1=1 --", 'null', '-1', '9'.repeat(30)),
  );
  const query = fc.dictionary(
    fc.oneof(
      fc.constantFrom('limit', 'cursor', 'order', 'tag', 'namePrefix', '__proto__', 'constructor'),
      fc.string({ maxLength: 10 }),
    ),
    fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.integer().map(String),
      fc.constantFrom('-1', '1e309', 'NaN', '%', '[]'),
    ),
    { maxKeys: 4 },
  );
  const headerValue = fc.string({ maxLength: 80 }).map((s) => s.replace(/[^\x20-\x7e]/g, ''));
  const headers = fc.record(
    {
      'if-match': headerValue,
      'if-none-match': headerValue,
      'idempotency-key': headerValue,
      'cache-control': headerValue,
      'x-request-id': headerValue,
      'content-type': fc.constantFrom(
        'application/json',
        'text/plain',
        'application/merge-patch+json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
      ),
    },
    { requiredKeys: [] },
  );
  const body = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 300 }),
    fc.constantFrom(
      '{"__proto__":{"admin":true}}',
      '{"name":"x","constructor":{"prototype":{}}}',
      '{',
      '[]',
      'null',
      '\u0000',
    ),
  );
  const auth = fc.oneof(
    { weight: 4, arbitrary: fc.constant('admin') },
    {
      weight: 1,
      arbitrary: fc.constantFrom('none', 'Bearer x.y.z', 'Bearer sk_0000000000000000_xx', 'Basic YTpi'),
    },
  );

  it('when fast-check sends generated paths, queries, headers and bodies to every route, then never a 5xx and every error is problem+json', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1000 }),
        segment,
        query,
        headers,
        body,
        auth,
        async (pick, param, q, h, payload, who) => {
          const op = operations[pick % operations.length] as Operation;
          const path = op.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(param));
          const qs = new URLSearchParams(q as Record<string, string>).toString();
          let req = request(t.app.server)[op.method.toLowerCase() as 'get'](`${path}${qs ? `?${qs}` : ''}`);
          for (const [name, value] of Object.entries(h)) if (value !== undefined) req = req.set(name, value);
          if (who === 'admin') req = req.set('x-api-key', admin);
          else if (who !== 'none') req = req.set('authorization', who);
          const res = ['POST', 'PATCH', 'PUT'].includes(op.method) ? await req.send(payload) : await req;
          expect(
            res.status,
            `${op.method} ${path}?${qs} -> ${res.status} ${res.text.slice(0, 200)}`,
          ).toBeLessThan(500);
          if (res.status >= 400)
            expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
        },
      ),
      { numRuns: scale(400, 5000) },
    );
    // The process is still healthy afterwards.
    expect((await request(t.app.server).get('/ready')).status).toBe(200);
  });
});
