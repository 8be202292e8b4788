import { readdirSync, readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildTestApp, type TestApp } from './helpers/app.ts';

const SECRET_TOKEN = 'eyJhbGciOiJIUzI1NiJ9.super-secret-bearer-token.sig';

/** Test-only routes: a validated body, a thrown internal error, a log of credentials, a lost database. */
function testRoutes(app: FastifyInstance) {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    '/test/things/:id',
    {
      schema: {
        params: z.object({ id: z.coerce.number().int().positive() }),
        body: z.strictObject({ name: z.string().min(1).max(5), tags: z.array(z.string()).max(2).optional() }),
      },
    },
    async (req) => ({ id: req.params.id, name: req.body.name }),
  );
  r.get('/test/boom', async () => {
    throw new Error('SELECT password FROM users WHERE id = 1 -- at /srv/app/src/secret.ts:42');
  });
  r.post('/test/log-credentials', async (req) => {
    req.log.info({ headers: req.headers }, 'debugging a request');
    return { ok: true };
  });
  r.get('/test/db-down', async () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    throw err;
  });
}

describe('http edge', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp({
      extend: testRoutes,
      env: { BODY_LIMIT: '2048', CORS_ORIGINS: 'https://app.example' },
    });
  });
  afterAll(() => t.close());

  describe('correlation ids and logs', () => {
    it('when x-request-id is well formed, then it is echoed and on every log line of the request', async () => {
      const res = await request(t.app.server).get('/health').set('x-request-id', 'abc-123.X:y_z');
      expect(res.headers['x-request-id']).toBe('abc-123.X:y_z');
      const lines = t.logs.lines.filter((l) => l.requestId === 'abc-123.X:y_z');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        level: 'info',
        msg: 'request completed',
        method: 'GET',
        statusCode: 200,
      });
      expect(String(lines[0]?.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it.each([
      ['too long', 'a'.repeat(129)],
      ['with forbidden characters', 'abc def<script>'],
    ])('when x-request-id is %s, then a new UUID replaces it', async (_what, id) => {
      const res = await request(t.app.server).get('/health').set('x-request-id', id);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('when a request is handled, then exactly one access line is written for it', async () => {
      const res = await request(t.app.server).get('/nope');
      const id = res.headers['x-request-id'];
      const lines = t.logs.lines.filter((l) => l.requestId === id);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ statusCode: 404, url: '/nope' });
    });

    it('when a handler logs the request headers, then the credential headers are redacted', async () => {
      const res = await request(t.app.server)
        .post('/test/log-credentials')
        .set('authorization', `Bearer ${SECRET_TOKEN}`)
        .set('x-api-key', 'sk_live_abcdef123456')
        .set('cookie', 'session=cookie-secret-value')
        .send({ name: 'x' });
      expect(res.status).toBe(200);
      const text = t.logs.text();
      expect(text).toContain('debugging a request');
      for (const secret of [SECRET_TOKEN, 'sk_live_abcdef123456', 'cookie-secret-value']) {
        expect(text).not.toContain(secret);
      }
      expect(text).toContain('[redacted]');
    });

    it('when a credential is sent in the query string, then the access log masks it', async () => {
      await request(t.app.server).get('/health?api_key=query-secret-123&x=1');
      expect(t.logs.text()).not.toContain('query-secret-123');
      expect(t.logs.text()).toContain('/health?api_key=[redacted]&x=1');
    });
  });

  describe('problem details', () => {
    const expectProblem = (res: request.Response, status: number, type: string) => {
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(res.body).toMatchObject({
        type: `urn:problem-type:${type}`,
        status,
        requestId: res.headers['x-request-id'],
      });
      expect(typeof res.body.title).toBe('string');
      expect(typeof res.body.instance).toBe('string');
    };

    it('when the body fails validation, then 400 lists each field path', async () => {
      const res = await request(t.app.server)
        .post('/test/things/7')
        .send({ name: 'too-long-name', tags: ['a', 'b', 'c'], extra: 1 });
      expectProblem(res, 400, 'validation-error');
      const paths = res.body.errors.map((e: { path: string }) => e.path).sort();
      expect(paths).toEqual(['/', '/name', '/tags']);
      expect(res.body.errors.every((e: { in: string }) => e.in === 'body')).toBe(true);
    });

    it('when a path parameter is invalid, then 400 names the params', async () => {
      const res = await request(t.app.server).post('/test/things/minus-one').send({ name: 'ok' });
      expectProblem(res, 400, 'validation-error');
      expect(res.body.errors[0]).toMatchObject({ in: 'params', path: '/id' });
    });

    it('when the route does not exist, then 404', async () => {
      const res = await request(t.app.server).get('/does/not/exist?q=1');
      expectProblem(res, 404, 'not-found');
      expect(res.body.instance).toBe('/does/not/exist');
    });

    it('when the path exists with another method, then 405 with Allow', async () => {
      const res = await request(t.app.server).delete('/health');
      expectProblem(res, 405, 'method-not-allowed');
      expect(res.headers.allow).toContain('GET');
    });

    it('when the body is larger than BODY_LIMIT, then 413', async () => {
      const res = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'application/json')
        .send(JSON.stringify({ name: 'x'.repeat(4096) }));
      expectProblem(res, 413, 'payload-too-large');
    });

    it('when the content type is not supported, then 415', async () => {
      const res = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'text/xml')
        .send('<a/>');
      expectProblem(res, 415, 'unsupported-media-type');
    });

    it('when the JSON is malformed, then 400', async () => {
      const res = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'application/json')
        .send('{"name": ');
      expectProblem(res, 400, 'malformed-body');
    });

    it.each([
      ['__proto__', '{"name":"a","__proto__":{"admin":true}}'],
      ['constructor.prototype', '{"name":"a","constructor":{"prototype":{"admin":true}}}'],
    ])('when the JSON carries %s, then 400', async (_what, body) => {
      const res = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'application/json')
        .send(body);
      expectProblem(res, 400, 'malformed-body');
    });

    it('when a handler fails unexpectedly, then 500 carries no message, SQL or path, and the log does', async () => {
      const res = await request(t.app.server).get('/test/boom');
      expectProblem(res, 500, 'internal-error');
      expect(res.text).not.toMatch(/SELECT|password|secret\.ts|\/srv/);
      expect(res.body.detail).toBeUndefined();
      const errLine = t.logs.lines.find(
        (l) => l.requestId === res.headers['x-request-id'] && l.msg === 'unhandled error',
      );
      expect(JSON.stringify(errLine)).toContain('SELECT password FROM users');
    });

    it('when the database cannot be reached during a request, then 503 with Retry-After', async () => {
      const res = await request(t.app.server).get('/test/db-down');
      expectProblem(res, 503, 'service-unavailable');
      expect(res.headers['retry-after']).toBe('5');
      expect(res.text).not.toContain('ECONNREFUSED');
    });
  });

  describe('security headers, CORS and OpenAPI', () => {
    it('when any API route answers, then the API CSP and helmet headers are set', async () => {
      const res = await request(t.app.server).get('/health');
      expect(res.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['strict-transport-security']).toContain('max-age=31536000');
      expect(res.headers['x-powered-by']).toBeUndefined();
    });

    it('when an error answers, then the same security headers are set', async () => {
      const res = await request(t.app.server).get('/nope');
      expect(res.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    });

    it('when the docs page is served, then only it gets the relaxed CSP', async () => {
      const res = await request(t.app.server).get('/docs/').redirects(1);
      expect(res.status).toBe(200);
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    });

    it('when /openapi.json is fetched, then it is OpenAPI 3.1 with the routes', async () => {
      const res = await request(t.app.server).get('/openapi.json');
      expect(res.status).toBe(200);
      expect(res.body.openapi).toBe('3.1.0');
      expect(Object.keys(res.body.paths)).toEqual(expect.arrayContaining(['/health', '/ready']));
    });

    it('when /openapi.json is fetched, then every /v1 operation declares its security (derived, never by hand) and public ones none', async () => {
      const paths = (await request(t.app.server).get('/openapi.json')).body.paths as Record<
        string,
        Record<string, { security?: unknown }>
      >;
      const operations = Object.entries(paths).flatMap(([path, ops]) =>
        Object.entries(ops).map(([method, op]) => ({ path, method, security: op.security })),
      );
      const authenticated = operations.filter((o) => o.path.startsWith('/v1/'));
      expect(authenticated.length).toBeGreaterThan(5);
      for (const o of authenticated)
        expect(o, `${o.method} ${o.path}`).toMatchObject({ security: [{ bearerAuth: [] }, { apiKey: [] }] });
      for (const o of operations.filter((op) => !op.path.startsWith('/v1/')))
        expect(o.security, `${o.method} ${o.path}`).toBeUndefined();
      // Routes do not repeat it: the only place it is written is the auth plugin.
      const routes = readdirSync(new URL('../src/modules', import.meta.url), {
        recursive: true,
        encoding: 'utf8',
      });
      for (const file of routes.filter((f) => f.endsWith('-routes.ts')))
        expect(readFileSync(new URL(`../src/modules/${file}`, import.meta.url), 'utf8')).not.toMatch(
          /\bsecurity\b/,
        );
    });

    it('when an allowed origin calls, then CORS headers allow it; another origin gets none', async () => {
      const ok = await request(t.app.server).get('/health').set('origin', 'https://app.example');
      expect(ok.headers['access-control-allow-origin']).toBe('https://app.example');
      expect(ok.headers['access-control-expose-headers']).toContain('x-request-id');
      const other = await request(t.app.server).get('/health').set('origin', 'https://evil.example');
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    });
  });
});

describe('http edge: load shedding', () => {
  let t: TestApp;
  beforeAll(async () => {
    // Any heap is "too much": every request is shed once under-pressure has taken its first sample.
    t = await buildTestApp({
      redis: false,
      env: { PRESSURE_MAX_HEAP_USED_BYTES: '1', PRESSURE_RETRY_AFTER_S: '7' },
    });
    await new Promise((r) => setTimeout(r, 1200));
  });
  afterAll(() => t.close());

  it('when the process is under pressure, then API routes get 503 problem+json with Retry-After', async () => {
    const res = await request(t.app.server).get('/openapi.json');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.body.type).toBe('urn:problem-type:overloaded');
  });

  it('when the process is under pressure, then probes still answer', async () => {
    expect((await request(t.app.server).get('/health')).status).toBe(200);
    expect((await request(t.app.server).get('/ready')).status).toBe(200);
  });
});
