// The served OpenAPI document as client generators read it: named operations and types, one error model
// (Problem under application/problem+json, shared responses), what each operation can answer derived
// from its route (credential, scope, inputs, preconditions, idempotency, cache, rate limit), the headers
// it sends, and the scopes it needs. Read from the document, so any resource is covered; the example
// resource's own details are in its test.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../src/scopes.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

type Json = Record<string, unknown>;
interface Ref {
  $ref?: string;
}
interface Response extends Ref {
  description?: string;
  headers?: Record<string, Ref>;
  content?: Record<string, { schema?: Ref & Json }>;
}
interface Parameter {
  name: string;
  in: string;
}
interface Operation {
  operationId?: string;
  summary?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Ref & Json }> };
  responses: Record<string, Response>;
}
interface Op {
  method: string;
  path: string;
  operation: Operation;
  name: string;
}

const METHODS = ['get', 'put', 'post', 'patch', 'delete'];
const RATE_LIMIT_HEADERS = ['RateLimit', 'RateLimit-Policy', 'X-RateLimit-Limit', 'X-RateLimit-Remaining'];

describe('the OpenAPI document', () => {
  let t: TestApp;
  let doc: Json & {
    info: Json;
    tags: { name: string; description?: string }[];
    components: { schemas: Record<string, Json>; responses: Record<string, Response>; headers: Json };
  };
  let ops: Op[];
  const op = (operationId: string) => {
    const found = ops.find((o) => o.operation.operationId === operationId);
    if (found === undefined) throw new Error(`no operation ${operationId}`);
    return found.operation;
  };
  const headerParams = (o: Op) =>
    (o.operation.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
  const scopesOf = (o: Op) => [
    ...new Set((o.operation.security ?? []).flatMap((r) => Object.values(r).flat())),
  ];
  const problemStatuses = (o: Op) => Object.keys(o.operation.responses).filter((s) => Number(s) >= 400);
  const successes = (o: Op) =>
    Object.entries(o.operation.responses).filter(([status]) => Number(status) < 400) as [string, Response][];

  beforeAll(async () => {
    // ES256 keys: the JWKS route exists (public) as well.
    const dir = mkdtempSync(join(tmpdir(), 'openapi-'));
    const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = join(dir, 'ec.pem');
    writeFileSync(pem, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    t = await buildTestApp({
      env: { JWT_ALGORITHM: 'ES256', JWT_PRIVATE_KEY_FILE: pem, SERVICE_NAME: 'orders' },
    });
    const res = await request(t.app.server).get('/openapi.json');
    expect(res.status).toBe(200);
    doc = res.body;
    ops = Object.entries(doc.paths as Record<string, Record<string, Operation>>).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]).map((method) => ({
        method,
        path,
        operation: item[method] as Operation,
        name: `${method.toUpperCase()} ${path}`,
      })),
    );
  });
  afterAll(() => t.close());

  it('when read, then info names the service, its licence and a relative server', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'orders API', license: { identifier: 'MIT' } });
    expect(String(doc.info.description)).toContain('application/problem+json');
    expect(doc.servers).toEqual([expect.objectContaining({ url: '/' })]);
  });

  it('when each operation is read, then it has a unique operationId, a summary and declared, described tags', () => {
    expect(ops.length).toBeGreaterThan(8);
    const ids = ops.map((o) => o.operation.operationId);
    for (const o of ops) {
      expect(o.operation.operationId, o.name).toMatch(/^[a-z][A-Za-z]+$/);
      expect(o.operation.summary, o.name).toEqual(expect.any(String));
      expect(o.operation.tags?.length, o.name).toBeGreaterThan(0);
    }
    expect(new Set(ids).size).toBe(ids.length);
    const declared = new Map(doc.tags.map((tag) => [tag.name, tag.description]));
    for (const tag of new Set(ops.flatMap((o) => o.operation.tags ?? [])))
      expect(declared.get(tag), `tag ${tag}`).toEqual(expect.any(String));
    expect(ids).toEqual(
      expect.arrayContaining([
        'getHealth',
        'getReadiness',
        'getJwks',
        'getMe',
        'issueToken',
        'revokeToken',
        'createApiKey',
        'listApiKeys',
        'revokeApiKey',
      ]),
    );
  });

  it('when an operation documents an error, then it is a shared response: a Problem under application/problem+json', () => {
    const { responses, schemas } = doc.components;
    for (const o of ops)
      for (const status of problemStatuses(o)) {
        // The readiness probe's 503 is its own body (what is not ready), for orchestrators.
        if (o.operation.operationId === 'getReadiness' && status === '503') continue;
        const ref = o.operation.responses[status]?.$ref;
        expect(ref, `${o.name} ${status}`).toMatch(/^#\/components\/responses\/\w+$/);
        const shared = responses[(ref as string).split('/').at(-1) as string] as Response;
        expect(shared.content, `${o.name} ${status}`).toEqual({
          'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
        });
        expect(shared.headers, `${o.name} ${status}`).toHaveProperty('X-Request-Id');
      }
    expect(schemas.Problem).toMatchObject({
      type: 'object',
      required: ['type', 'title', 'status', 'requestId'],
      properties: {
        type: { type: 'string' },
        title: { type: 'string' },
        status: { type: 'integer' },
        detail: { type: 'string' },
        instance: { type: 'string' },
        requestId: { type: 'string' },
        errors: {
          type: 'array',
          items: { required: ['in', 'path', 'message'], properties: expect.any(Object) },
        },
      },
    });
    expect(Object.keys(responses).sort()).toEqual(
      [
        'BadRequest',
        'Unauthorized',
        'Forbidden',
        'NotFound',
        'Conflict',
        'PreconditionFailed',
        'ContentTooLarge',
        'UnsupportedMediaType',
        'UnprocessableContent',
        'TooManyRequests',
        'InternalServerError',
        'ServiceUnavailable',
      ].sort(),
    );
    expect(Object.keys(responses.Unauthorized?.headers ?? {})).toContain('WWW-Authenticate');
    expect(Object.keys(responses.TooManyRequests?.headers ?? {})).toEqual(
      expect.arrayContaining(['Retry-After', ...RATE_LIMIT_HEADERS, 'X-RateLimit-Reset']),
    );
    expect(Object.keys(responses.ServiceUnavailable?.headers ?? {})).toContain('Retry-After');
  });

  it("when an operation is read, then its errors are the ones its route's shape can produce", () => {
    for (const o of ops) {
      const statuses = problemStatuses(o);
      const has = (status: number, why: string) =>
        expect(statuses, `${o.name}: ${why}`).toContain(String(status));
      const hasNot = (status: number, why: string) =>
        expect(statuses, `${o.name}: ${why}`).not.toContain(String(status));
      const secured = (o.operation.security ?? []).length > 0;
      const params = o.operation.parameters ?? [];
      const headers = headerParams(o);
      has(500, 'anything can fail');
      if (secured) has(401, 'a credential is required');
      else hasNot(401, 'public');
      if (scopesOf(o).length > 0) has(403, 'a scope is required');
      if (o.operation.requestBody) for (const s of [400, 413, 415]) has(s, 'it reads a body');
      else for (const s of [413, 415]) hasNot(s, 'it reads no body');
      if (params.length > 0) has(400, 'it validates its parameters');
      if (params.some((p) => p.in === 'path')) has(404, 'it names a resource');
      else hasNot(404, 'it names no resource');
      if (headers.includes('if-match')) has(412, 'it takes If-Match');
      else hasNot(412, 'it takes no If-Match');
      const idempotent = headers.includes('idempotency-key');
      for (const s of [409, 422]) idempotent ? has(s, 'idempotent') : hasNot(s, 'not idempotent');
      // Every /v1 route is rate limited (per credential), and so are the other routes but the probes.
      if (o.operation.tags?.includes('ops')) {
        hasNot(429, 'probes are never limited');
        // Never shed either: a probe's only 503 is the readiness answer itself.
        expect(o.operation.responses['503']?.$ref, o.name).toBeUndefined();
      } else {
        has(429, 'rate limited');
        has(503, 'load shedding and dependencies');
      }
    }
    // Beyond the shape: a token exchange refuses scopes the key lacks.
    expect(Object.keys(op('issueToken').responses)).toContain('403');
  });

  it('when an operation is read, then its security lists the scopes its guard requires; public ones have none', () => {
    for (const o of ops) {
      const security = o.operation.security;
      if (o.path.startsWith('/v1/')) {
        const scopes = scopesOf(o);
        expect(security, o.name).toEqual([{ bearerAuth: scopes }, { apiKey: scopes }]);
        for (const scope of scopes) expect(SCOPES as readonly string[], o.name).toContain(scope);
      } else expect(security, o.name).toEqual([]);
    }
    for (const id of ['createApiKey', 'listApiKeys', 'revokeApiKey'])
      expect(op(id).security, id).toEqual([{ bearerAuth: ['admin'] }, { apiKey: ['admin'] }]);
    expect(op('getMe').security).toEqual([{ bearerAuth: [] }, { apiKey: [] }]);
    for (const id of ['getHealth', 'getReadiness', 'getJwks']) expect(op(id).security, id).toEqual([]);
    const schemes = (doc.components as unknown as { securitySchemes: Record<string, Json> }).securitySchemes;
    expect(schemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    expect(String(schemes.bearerAuth?.description)).toMatch(/API key/);
    expect(schemes.apiKey).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-API-Key' });
  });

  it('when bodies and responses are read, then each is a named component (no type provider Input twins)', () => {
    const { schemas } = doc.components;
    expect(Object.keys(schemas)).toEqual(
      expect.arrayContaining([
        'Problem',
        'ApiKey',
        'ApiKeyList',
        'CreateApiKey',
        'CreatedApiKey',
        'Me',
        'Token',
        'TokenRequest',
        'RevokeToken',
        'RevokeResult',
        'Health',
        'Readiness',
        'Jwks',
      ]),
    );
    for (const name of Object.keys(schemas)) expect(name).not.toMatch(/Input$/);
    const named = (schema: Ref | undefined, where: string) => {
      expect(schema?.$ref, where).toMatch(/^#\/components\/schemas\/\w+$/);
      expect(schemas[String(schema?.$ref).split('/').at(-1) as string], where).toBeDefined();
    };
    for (const o of ops) {
      for (const [type, media] of Object.entries(o.operation.requestBody?.content ?? {}))
        named(media.schema, `${o.name} body ${type}`);
      for (const [status, response] of successes(o))
        for (const [type, media] of Object.entries(response.content ?? {}))
          named(media.schema, `${o.name} ${status} ${type}`);
    }
    // Optional bodies say so (@fastify/swagger marks every body required).
    expect(op('issueToken').requestBody?.required).toBe(false);
    expect(op('createApiKey').requestBody?.required).toBe(true);
  });

  it('when types are read, then timestamps are date-time and integers have real bounds and a format', () => {
    const text = JSON.stringify(doc);
    expect(text).not.toContain('9007199254740991');
    const visit = (value: unknown, path: string): void => {
      if (Array.isArray(value)) for (const [i, v] of value.entries()) visit(v, `${path}/${i}`);
      else if (typeof value === 'object' && value !== null) {
        const node = value as Json;
        if (node.type === 'integer') {
          expect(node, path).toMatchObject({ minimum: expect.any(Number), maximum: expect.any(Number) });
          expect(['int32', 'int64'], path).toContain(node.format);
        }
        for (const [key, child] of Object.entries(node)) {
          if (path.endsWith('/properties') && /At$/.test(key))
            expect(JSON.stringify(child), `${path}/${key}`).toContain('"format":"date-time"');
          visit(child, `${path}/${key}`);
        }
      }
    };
    visit(doc.components.schemas, '#/components/schemas');
    visit(doc.paths, '#/paths');
  });

  it('when success responses are read, then they document the headers sent with them', () => {
    for (const o of ops)
      for (const [status, response] of successes(o)) {
        const names = Object.keys(response.headers ?? {});
        const where = `${o.name} ${status}`;
        expect(names, where).toContain('X-Request-Id');
        for (const name of names)
          expect(response.headers?.[name]?.$ref, where).toBe(`#/components/headers/${name}`);
        if (!o.operation.tags?.includes('ops'))
          expect(names, where).toEqual(expect.arrayContaining(RATE_LIMIT_HEADERS));
        else expect(names, where).not.toContain('RateLimit');
        if (headerParams(o).includes('idempotency-key') && status.startsWith('2')) {
          expect(names, where).toContain('Idempotent-Replayed');
          expect(response.description, where).toMatch(/Idempotency-Key/);
        }
        // Cached reads: Cache-Control: no-cache skips the cache; X-Cache says whether it answered.
        if (headerParams(o).includes('cache-control')) expect(names, where).toContain('X-Cache');
        if (status === '201') expect(names, where).toContain('Location');
      }
    expect(doc.components.headers).toHaveProperty('WWW-Authenticate');
    expect(Object.keys(op('getReadiness').responses['503']?.headers ?? {})).toContain('Retry-After');
  });

  it('when a DELETE is documented, then it answers 204 without content; and it really does', async () => {
    const deletes = ops.filter((o) => o.method === 'delete');
    expect(deletes.length).toBeGreaterThan(0);
    for (const o of deletes) {
      expect(
        Object.keys(o.operation.responses).filter((s) => s.startsWith('2')),
        o.name,
      ).toEqual(['204']);
      expect(o.operation.responses['204']?.content, o.name).toBeUndefined();
    }
    const admin = (await createKey(t.app, ['admin'])).key;
    const victim = await createKey(t.app, []);
    const res = await request(t.app.server).delete(`/v1/api-keys/${victim.id}`).set('x-api-key', admin);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expect(res.headers['content-type']).toBeUndefined();
  });

  it('when the rate limiter answers, then the headers it sends are the documented ones', async () => {
    const key = (await createKey(t.app, [])).key;
    const res = await request(t.app.server).get('/v1/me').set('x-api-key', key);
    expect(res.status).toBe(200);
    const documented = Object.keys(op('getMe').responses['200']?.headers ?? {}).map((h) => h.toLowerCase());
    for (const sent of Object.keys(res.headers).filter((h) => /ratelimit|request-id/.test(h)))
      expect(documented).toContain(sent);
    const jwks = await request(t.app.server).get('/.well-known/jwks.json');
    expect(jwks.status).toBe(200);
    expect(jwks.body.keys[0]).toMatchObject({ kty: 'EC', alg: 'ES256', use: 'sig' });
  });
});
