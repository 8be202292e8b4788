import { readdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import errorHandler from '../src/plugins/error-handler.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

const SECRET_TOKEN = 'eyJhbGciOiJIUzI1NiJ9.super-secret-bearer-token.sig';
const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: Record<string, unknown>;
}

/** Writes bytes on a fresh TCP connection; resolves with every response read once the server closes it. */
function rawExchange(
  port: number,
  bytes: string | string[],
): Promise<{ responses: RawResponse[]; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ responses: parseResponses(Buffer.concat(chunks).toString('latin1')), closedByServer: false });
    }, 3000);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ responses: parseResponses(Buffer.concat(chunks).toString('latin1')), closedByServer: true });
    });
    const parts = Array.isArray(bytes) ? bytes : [bytes];
    // Later parts go once the previous response has arrived (a reused keep-alive connection).
    let sent = 0;
    const sendNext = () => {
      const part = parts[sent++];
      if (part !== undefined) socket.write(part);
    };
    socket.on('data', () => {
      if (parseResponses(Buffer.concat(chunks).toString('latin1')).length === sent) sendNext();
    });
    sendNext();
  });
}

/** Splits HTTP/1.1 responses read off one socket (each framed by its Content-Length). */
function parseResponses(data: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = data;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    if (rest.length < end + 4 + length) break;
    const text = rest.slice(end + 4, end + 4 + length);
    const body = headers['content-type']?.includes('json') ? JSON.parse(text) : {};
    out.push({ status: Number(statusLine.split(' ')[1]), headers, text, body });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

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

    it('when a text/plain body is sent, then 415: Fastify no longer parses text/plain, with or without a body schema', async () => {
      const validated = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'text/plain')
        .send('{"name":"ok"}');
      expectProblem(validated, 415, 'unsupported-media-type');
      expect(validated.body.detail).toBe('This endpoint accepts application/json.');
      const unvalidated = await request(t.app.server)
        .post('/test/log-credentials')
        .set('content-type', 'text/plain; charset=utf-8')
        .send('hello');
      expectProblem(unvalidated, 415, 'unsupported-media-type');
    });

    it('when a route declares no consumes, then only application/json is accepted (any case, any parameters)', async () => {
      const merge = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'application/merge-patch+json')
        .send('{"name":"ok"}');
      expectProblem(merge, 415, 'unsupported-media-type');
      expect(merge.text).not.toContain('merge-patch');
      const json = await request(t.app.server)
        .post('/test/things/1')
        .set('content-type', 'Application/JSON; Charset=UTF-8')
        .send('{"name":"ok"}');
      expect(json.status).toBe(200);
      expect(json.body).toEqual({ id: 1, name: 'ok' });
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
      for (const o of authenticated) {
        // Either scheme, each holding the scopes the route's guards require (none for some).
        expect(o, `${o.method} ${o.path}`).toMatchObject({
          security: [{ bearerAuth: expect.any(Array) }, { apiKey: expect.any(Array) }],
        });
        const [bearer, apiKey] = o.security as { bearerAuth?: string[]; apiKey?: string[] }[];
        expect(bearer?.bearerAuth, `${o.method} ${o.path}`).toEqual(apiKey?.apiKey);
      }
      for (const o of operations.filter((op) => !op.path.startsWith('/v1/')))
        expect(o.security, `${o.method} ${o.path}`).toEqual([]);
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

describe('http edge: media types declared by routes', () => {
  let t: TestApp;
  let admin: string;
  beforeAll(async () => {
    t = await buildTestApp({
      redis: false,
      extend: (app) => {
        app.withTypeProvider<ZodTypeProvider>().patch(
          '/test/patchable',
          {
            schema: {
              body: z.strictObject({ name: z.string().nullable().optional() }),
              consumes: ['application/json', 'application/merge-patch+json'],
            },
          },
          async (req) => req.body,
        );
      },
    });
    admin = (await createKey(t.app, ['admin'])).key;
  });
  afterAll(() => t.close());

  const patch = (type: string, body: string) =>
    request(t.app.server).patch('/test/patchable').set('content-type', type).send(body);

  it('when a route declares JSON and merge patch, then both are read; any other type is 415 with Accept-Patch', async () => {
    const merged = await patch('application/merge-patch+json; charset=utf-8', '{"name":null}');
    expect(merged.status).toBe(200);
    expect(merged.body).toEqual({ name: null });
    const json = await patch('application/json', '{"name":"x"}');
    expect(json.body).toEqual({ name: 'x' });
    const text = await patch('text/plain', '{"name":"x"}');
    expect(text.status).toBe(415);
    expect(text.headers['content-type']).toBe(PROBLEM_JSON);
    expect(text.headers['accept-patch']).toBe('application/json, application/merge-patch+json');
    expect(text.body).toMatchObject({
      type: 'urn:problem-type:unsupported-media-type',
      detail: 'This endpoint accepts application/json or application/merge-patch+json.',
      requestId: text.headers['x-request-id'],
    });
  });

  it('when an API route that declares only JSON gets merge patch, then 415, and nothing is written', async () => {
    const res = await request(t.app.server)
      .post('/v1/api-keys')
      .set('x-api-key', admin)
      .set('content-type', 'application/merge-patch+json')
      .send('{"name":"merge","scopes":["admin"]}');
    expect(res.status).toBe(415);
    expect(res.headers['content-type']).toBe(PROBLEM_JSON);
    const keys = await request(t.app.server).get('/v1/api-keys').set('x-api-key', admin);
    expect(keys.body.items.map((k: { name: string }) => k.name)).not.toContain('merge');
  });

  it('when an unauthenticated request has the wrong type, then 401 first: the gate runs after authentication', async () => {
    const res = await request(t.app.server).post('/v1/api-keys').set('content-type', 'text/plain').send('x');
    expect(res.status).toBe(401);
  });

  it('when a route declares a media type no parser reads, then registering it fails', async () => {
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    await app.register(errorHandler);
    expect(() =>
      app.post('/x', { schema: { body: z.object({}), consumes: ['text/csv'] } }, async () => ({})),
    ).toThrow(/consumes text\/csv/);
    // A declared type with a parser is fine.
    app.post('/y', { schema: { body: z.object({}), consumes: ['application/json'] } }, async () => ({}));
    await app.ready();
    await app.close();
  });
});

describe('http edge: large validation failures', () => {
  let t: TestApp;
  let admin: string;
  beforeAll(async () => {
    t = await buildTestApp({
      redis: false,
      extend: (app) => {
        app
          .withTypeProvider<ZodTypeProvider>()
          .post(
            '/test/numbers',
            { schema: { body: z.strictObject({ values: z.array(z.number()) }) } },
            async () => ({}),
          );
      },
    });
    admin = (await createKey(t.app, ['admin'])).key;
  });
  afterAll(() => t.close());

  it('when a strict body carries 50,000 unknown keys, then one small 400 names a few of them and counts the rest', async () => {
    const body: Record<string, unknown> = { name: 'k', scopes: ['admin'] };
    for (let i = 0; i < 50_000; i++) body[`k${i}`] = 0;
    const res = await request(t.app.server).post('/v1/api-keys').set('x-api-key', admin).send(body);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe(PROBLEM_JSON);
    expect(Buffer.byteLength(res.text)).toBeLessThan(8 * 1024);
    expect(res.body.detail).toBe('Invalid body.');
    expect(res.body.errors).toEqual([
      { in: 'body', path: '/', message: 'Unrecognized keys: "k0", "k1", "k2", "k3", "k4" and 49995 more' },
    ]);
  });

  it('when a body has 50,000 invalid values, then 20 are listed and the detail counts them all', async () => {
    const res = await request(t.app.server)
      .post('/test/numbers')
      .send({ values: Array.from({ length: 50_000 }, (_, i) => `n${i}`) });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe(PROBLEM_JSON);
    expect(Buffer.byteLength(res.text)).toBeLessThan(8 * 1024);
    expect(res.body.detail).toBe('Invalid body: 50000 problems; the first 20 are listed.');
    expect(res.body.errors).toHaveLength(20);
    expect(res.body.errors[19]).toMatchObject({ in: 'body', path: '/values/19' });
  });

  it('when an unknown key is 200 KB long, then the answer quotes at most 40 characters of it', async () => {
    const res = await request(t.app.server)
      .post('/v1/api-keys')
      .set('x-api-key', admin)
      .send({ name: 'k', scopes: ['admin'], ['x'.repeat(200_000)]: 1 });
    expect(res.status).toBe(400);
    expect(Buffer.byteLength(res.text)).toBeLessThan(2 * 1024);
    expect(res.body.errors[0].message).toBe(`Unrecognized key: "${'x'.repeat(39)}…"`);
  });
});

describe('http edge: framework-level rejections on a listening server', () => {
  let t: TestApp;
  let port: number;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp({ redis: false });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
    key = (await createKey(t.app, ['admin'])).key;
  });
  afterAll(() => t.close());

  const CANARY = 'canary7f3';

  /** problem+json, with the request id in the header and the body, the security headers, and nothing echoed. */
  const expectBareProblem = (res: RawResponse | undefined, status: number, type: string) => {
    expect(res, 'a complete response').toBeDefined();
    const r = res as RawResponse;
    expect(r.status).toBe(status);
    expect(r.headers['content-type']).toBe(PROBLEM_JSON);
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none'");
    expect(r.body).toEqual({
      type: `urn:problem-type:${type}`,
      title: expect.any(String),
      status,
      detail: expect.any(String),
      requestId: r.headers['x-request-id'],
    });
    expect(r.text).not.toContain(CANARY);
  };

  const get = (path: string, method = 'GET') =>
    `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nx-api-key: ${key}\r\nConnection: close\r\n\r\n`;

  it.each([
    ['a static route', `/v1/me/%${CANARY}`],
    ['a parametric route', `/v1/api-keys/%${CANARY}`],
    ['a percent sign alone', '/v1/api-keys/%'],
  ])(
    'when a path on %s is not valid percent-encoding, then 400 problem+json that does not echo it',
    async (_what, path) => {
      const { responses } = await rawExchange(port, get(path));
      expect(responses).toHaveLength(1);
      expectBareProblem(responses[0], 400, 'bad-request');
      expect(responses[0]?.text).not.toContain('%');
      const line = t.logs.lines.find((l) => l.requestId === responses[0]?.headers['x-request-id']);
      expect(line).toMatchObject({ msg: 'request completed', statusCode: 400, method: 'GET' });
    },
  );

  it('when a path parameter is over 200 characters (DELETE /v1/api-keys/:id), then 414 problem+json that does not echo it', async () => {
    const { responses } = await rawExchange(port, get(`/v1/api-keys/${CANARY}${'a'.repeat(200)}`, 'DELETE'));
    expectBareProblem(responses[0], 414, 'uri-too-long');
  });

  it('when the headers exceed the limit, then 431 problem+json, connection: close, and the server closes the socket', async () => {
    const bytes = `GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${CANARY}${'a'.repeat(20_000)}\r\n\r\n`;
    const { responses, closedByServer } = await rawExchange(port, bytes);
    expect(responses).toHaveLength(1);
    expectBareProblem(responses[0], 431, 'request-header-fields-too-large');
    expect(responses[0]?.headers.connection).toBe('close');
    expect(closedByServer).toBe(true);
    const line = t.logs.lines.find((l) => l.requestId === responses[0]?.headers['x-request-id']);
    expect(line).toMatchObject({ msg: 'client error', statusCode: 431, code: 'HPE_HEADER_OVERFLOW' });
    // The raw packet (headers, credentials included) is never logged.
    expect(JSON.stringify(line)).not.toContain(CANARY);
  });

  it.each([
    [
      'both Content-Length and Transfer-Encoding (request smuggling)',
      `POST /v1/api-keys HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX-Canary: ${CANARY}\r\n\r\n0\r\n\r\n`,
    ],
    ['a garbled request line', `GARBAGE ${CANARY}\r\n\r\n`],
    ['an unknown HTTP version', `GET /health HTTP/9.${CANARY}\r\nHost: localhost\r\n\r\n`],
    ['a header without a colon', `GET /health HTTP/1.1\r\nHost: localhost\r\n${CANARY}\r\n\r\n`],
  ])(
    'when a request has %s, then 400 problem+json, connection: close, and the socket is closed',
    async (_what, bytes) => {
      const { responses, closedByServer } = await rawExchange(port, bytes);
      expect(responses).toHaveLength(1);
      expectBareProblem(responses[0], 400, 'bad-request');
      expect(responses[0]?.headers.connection).toBe('close');
      expect(closedByServer).toBe(true);
    },
  );

  it('when a malformed request follows a complete one on a keep-alive connection, then it still gets its 400', async () => {
    const { responses, closedByServer } = await rawExchange(port, [
      'GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n',
      `GARBAGE ${CANARY}\r\n\r\n`,
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 400]);
    expectBareProblem(responses[1], 400, 'bad-request');
    expect(closedByServer).toBe(true);
  });

  it.each([
    ['FOO /health', 'a method Node does not parse'],
    ['PROPFIND /v1/me', 'a method Node parses but Fastify does not route'],
    ['PROPFIND /no/such/path', 'the same on an unknown path'],
    ['CONNECT localhost:443', 'CONNECT (no proxy here)'],
  ])('when the request is %s (%s), then 501 problem+json', async (line) => {
    const { responses } = await rawExchange(
      port,
      `${line} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    );
    expect(responses).toHaveLength(1);
    const res = responses[0] as RawResponse;
    expect(res.status).toBe(501);
    expect(res.headers['content-type']).toBe(PROBLEM_JSON);
    expect(res.body).toMatchObject({
      type: 'urn:problem-type:not-implemented',
      status: 501,
      requestId: res.headers['x-request-id'],
    });
    expect(res.headers.allow).toBeUndefined();
  });

  it.each([
    ['PUT', '/health', 'GET, HEAD'],
    ['POST', '/v1/me', 'GET, HEAD'],
    ['TRACE', '/v1/api-keys', 'POST, GET, HEAD'],
  ])(
    'when a method Fastify routes is sent to a known path without it (%s %s), then 405 with Allow',
    async (method, path, allow) => {
      const { responses } = await rawExchange(
        port,
        `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      const res = responses[0] as RawResponse;
      expect(res.status).toBe(405);
      expect(res.headers['content-type']).toBe(PROBLEM_JSON);
      expect(res.headers.allow?.split(', ').sort()).toEqual(allow.split(', ').sort());
    },
  );
});
