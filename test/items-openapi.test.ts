// The example resource in the OpenAPI document: its operations and named types, the scopes, headers and
// preconditions they document (ETag, If-Match, If-None-Match, Idempotency-Key, X-Cache), JSON merge
// patch with at least one field, and a DELETE that answers 204 with nothing, as documented.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

interface Response {
  $ref?: string;
  description?: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema: { $ref?: string } }>;
}
interface Operation {
  operationId: string;
  summary: string;
  tags: string[];
  security: Record<string, string[]>[];
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<string, Response>;
}

describe('items in the OpenAPI document', () => {
  let t: TestApp;
  let paths: Record<string, Record<string, Operation>>;
  let schemas: Record<
    string,
    { properties?: Record<string, Record<string, unknown>>; minProperties?: number }
  >;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp();
    const doc = (await request(t.app.server).get('/openapi.json')).body;
    paths = doc.paths;
    schemas = doc.components.schemas;
    key = (await createKey(t.app, ['items:read', 'items:write'])).key;
  });
  afterAll(() => t.close());

  const op = (path: string, method: string) => paths[path]?.[method] as Operation;
  const headerParams = (o: Operation) =>
    (o.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
  const statuses = (o: Operation) => Object.keys(o.responses);
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

  it('when read, then the five operations are named, summarised and need the scope their guard requires', () => {
    const expected = [
      ['/v1/items', 'post', 'createItem', 'items:write'],
      ['/v1/items', 'get', 'listItems', 'items:read'],
      ['/v1/items/{id}', 'get', 'getItem', 'items:read'],
      ['/v1/items/{id}', 'patch', 'updateItem', 'items:write'],
      ['/v1/items/{id}', 'delete', 'deleteItem', 'items:write'],
    ] as const;
    for (const [path, method, id, scope] of expected) {
      const o = op(path, method);
      expect(o.operationId).toBe(id);
      expect(o.summary).toEqual(expect.any(String));
      expect(o.tags).toEqual(['items']);
      expect(o.security, id).toEqual([{ bearerAuth: [scope] }, { apiKey: [scope] }]);
      expect(statuses(o), id).toEqual(expect.arrayContaining(['401', '403', '429', '500', '503']));
    }
  });

  it('when read, then bodies and responses are the named Item types, timestamps date-time', () => {
    expect(op('/v1/items', 'post').requestBody?.content['application/json']?.schema).toEqual(
      ref('CreateItem'),
    );
    expect(op('/v1/items', 'post').responses['201']?.content?.['application/json']?.schema).toEqual(
      ref('Item'),
    );
    expect(op('/v1/items', 'get').responses['200']?.content?.['application/json']?.schema).toEqual(
      ref('ItemList'),
    );
    expect(op('/v1/items/{id}', 'get').responses['200']?.content?.['application/json']?.schema).toEqual(
      ref('Item'),
    );
    expect(schemas.Item?.properties?.createdAt).toMatchObject({ type: 'string', format: 'date-time' });
    expect(schemas.Item?.properties?.updatedAt).toMatchObject({ type: 'string', format: 'date-time' });
    expect(schemas.Item?.properties?.version).toMatchObject({ minimum: 1, maximum: 2_147_483_647 });
    expect(schemas.ItemList?.properties?.items).toMatchObject({ items: ref('Item'), maxItems: 100 });
  });

  it('when PATCH is read, then it takes JSON merge patch as well as JSON, at least one field, and If-Match', () => {
    const patch = op('/v1/items/{id}', 'patch');
    expect(patch.requestBody?.content).toEqual({
      'application/json': { schema: ref('UpdateItem') },
      'application/merge-patch+json': { schema: ref('UpdateItem') },
    });
    expect(schemas.UpdateItem?.minProperties).toBe(1);
    expect(headerParams(patch)).toContain('if-match');
    expect(statuses(patch)).toEqual(expect.arrayContaining(['200', '400', '404', '412', '413', '415']));
    expect(Object.keys(patch.responses['200']?.headers ?? {})).toContain('ETag');
  });

  it('when the reads are read, then they document If-None-Match, Cache-Control, ETag, X-Cache and 304', () => {
    const get = op('/v1/items/{id}', 'get');
    expect(headerParams(get)).toEqual(expect.arrayContaining(['if-none-match', 'cache-control']));
    expect(Object.keys(get.responses['200']?.headers ?? {})).toEqual(
      expect.arrayContaining(['ETag', 'X-Cache', 'X-Request-Id', 'RateLimit']),
    );
    expect(get.responses['304']?.content).toBeUndefined();
    expect(Object.keys(get.responses['304']?.headers ?? {})).toContain('ETag');
    expect(statuses(get)).toContain('404');
    expect(headerParams(op('/v1/items', 'get'))).toContain('cache-control');
    expect(statuses(op('/v1/items', 'get'))).not.toContain('404');
  });

  it('when the create is read, then it documents Idempotency-Key, 201 with Location, ETag and the replay, 409 and 422', async () => {
    const post = op('/v1/items', 'post');
    expect(headerParams(post)).toContain('idempotency-key');
    const created = post.responses['201'] as Response;
    expect(Object.keys(created.headers ?? {})).toEqual(
      expect.arrayContaining(['Location', 'ETag', 'Idempotent-Replayed']),
    );
    expect(created.description).toMatch(/Idempotency-Key/);
    expect(statuses(post)).toEqual(expect.arrayContaining(['400', '409', '413', '415', '422']));
    expect(statuses(post)).not.toContain('404');
    // And the replay is what the document says: the same 201, marked.
    const send = () =>
      request(t.app.server)
        .post('/v1/items')
        .set('x-api-key', key)
        .set('idempotency-key', 'openapi-replay')
        .send({ name: 'once' });
    const first = await send();
    const again = await send();
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers.location).toBe(first.headers.location);
  });

  it('when DELETE is read, then it is 204 without content, with If-Match and 412; and it answers so', async () => {
    const del = op('/v1/items/{id}', 'delete');
    expect(statuses(del).filter((s) => s.startsWith('2'))).toEqual(['204']);
    expect(del.responses['204']?.content).toBeUndefined();
    expect(headerParams(del)).toContain('if-match');
    expect(statuses(del)).toEqual(expect.arrayContaining(['404', '412']));
    const { body } = await request(t.app.server)
      .post('/v1/items')
      .set('x-api-key', key)
      .send({ name: 'gone' });
    const res = await request(t.app.server).delete(`/v1/items/${body.id}`).set('x-api-key', key);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    const stale = await request(t.app.server)
      .delete(`/v1/items/${body.id}`)
      .set('x-api-key', key)
      .set('if-match', '"v1"');
    expect(stale.status).toBe(404);
  });
});
