import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

const RATE = { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' };

describe('items: CRUD and ownership', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;
  let readOnly: string;
  beforeAll(async () => {
    t = await buildTestApp({ env: RATE });
    alice = (await createKey(t.app, ['items:read', 'items:write'], { subject: 'alice' })).key;
    bob = (await createKey(t.app, ['items:read', 'items:write'], { subject: 'bob' })).key;
    readOnly = (await createKey(t.app, ['items:read'], { subject: 'alice' })).key;
  });
  afterAll(() => t.close());

  const as = (key: string) => ({
    post: (body: unknown, headers: Record<string, string> = {}) =>
      request(t.app.server)
        .post('/v1/items')
        .set('x-api-key', key)
        .set(headers)
        .send(body as object),
    get: (path: string, headers: Record<string, string> = {}) =>
      request(t.app.server).get(`/v1/items${path}`).set('x-api-key', key).set(headers),
    patch: (id: string, body: unknown, headers: Record<string, string> = {}) =>
      request(t.app.server)
        .patch(`/v1/items/${id}`)
        .set('x-api-key', key)
        .set(headers)
        .send(body as object),
    del: (id: string, headers: Record<string, string> = {}) =>
      request(t.app.server).delete(`/v1/items/${id}`).set('x-api-key', key).set(headers),
  });

  it('when an item is created, read, updated and deleted, then every step answers as documented', async () => {
    const created = await as(alice).post({ name: 'Lamp', description: 'desk lamp', tags: ['home', 'light'] });
    expect(created.status).toBe(201);
    const item = created.body;
    expect(item).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'Lamp',
      description: 'desk lamp',
      tags: ['home', 'light'],
      version: 1,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(created.headers.location).toBe(`/v1/items/${item.id}`);
    expect(created.headers.etag).toBe('"v1"');
    expect(item).not.toHaveProperty('owner');

    const read = await as(alice).get(`/${item.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(item);
    expect(read.headers.etag).toBe('"v1"');
    expect(read.headers['cache-control']).toBe('private');

    const patched = await as(alice).patch(
      item.id,
      { description: null, tags: ['home'] },
      { 'if-match': '"v1"' },
    );
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ name: 'Lamp', description: null, tags: ['home'], version: 2 });
    expect(patched.headers.etag).toBe('"v2"');

    const merge = await request(t.app.server)
      .patch(`/v1/items/${item.id}`)
      .set('x-api-key', alice)
      .set('content-type', 'application/merge-patch+json')
      .send(JSON.stringify({ name: 'Desk lamp' }));
    expect(merge.body).toMatchObject({ name: 'Desk lamp', version: 3 });

    expect((await as(alice).del(item.id, { 'if-match': '"v3"' })).status).toBe(204);
    expect((await as(alice).get(`/${item.id}`)).status).toBe(404);
    expect((await as(alice).del(item.id)).status).toBe(404);
  });

  it('when another principal asks for an item, then it is 404 exactly like a missing one, and never its data', async () => {
    const { body: item } = await as(alice).post({ name: 'private' });
    await as(alice).get(`/${item.id}`); // now cached for alice
    const theirs = await as(bob).get(`/${item.id}`);
    const missing = await as(bob).get(`/${randomUUID()}`);
    expect(theirs.status).toBe(404);
    const strip = (b: Record<string, unknown>) => ({ ...b, requestId: undefined, instance: undefined });
    expect(strip(theirs.body)).toEqual(strip(missing.body));
    expect(theirs.text).not.toContain('private');
    expect((await as(bob).patch(item.id, { name: 'hijack' })).status).toBe(404);
    expect((await as(bob).del(item.id)).status).toBe(404);
    expect((await as(alice).get(`/${item.id}`)).body.name).toBe('private');
    const bobsList = await as(bob).get('');
    expect(bobsList.body.items.map((i: { id: string }) => i.id)).not.toContain(item.id);
  });

  it('when a credential lacks the scope, then 403', async () => {
    expect((await as(readOnly).post({ name: 'x' })).status).toBe(403);
    const { body: item } = await as(alice).post({ name: 'y' });
    expect((await as(readOnly).patch(item.id, { name: 'z' })).status).toBe(403);
    expect((await as(readOnly).del(item.id)).status).toBe(403);
    expect((await as(readOnly).get(`/${item.id}`)).status).toBe(200);
    const writer = (await createKey(t.app, ['items:write'], { subject: 'alice' })).key;
    expect((await as(writer).get(`/${item.id}`)).status).toBe(403);
  });

  it('when If-None-Match names the current ETag, then 304; a stale If-Match is 412', async () => {
    const { body: item } = await as(alice).post({ name: 'versioned' });
    expect((await as(alice).get(`/${item.id}`, { 'if-none-match': '"v1"' })).status).toBe(304);
    expect((await as(alice).get(`/${item.id}`, { 'if-none-match': 'W/"v1", "v9"' })).status).toBe(304);
    expect((await as(alice).get(`/${item.id}`, { 'if-none-match': '"v2"' })).status).toBe(200);
    await as(alice).patch(item.id, { name: 'v2' });
    const stale = await as(alice).patch(item.id, { name: 'lost update' }, { 'if-match': '"v1"' });
    expect(stale.status).toBe(412);
    expect(stale.body.type).toBe('urn:problem-type:precondition-failed');
    expect((await as(alice).del(item.id, { 'if-match': '"v1"' })).status).toBe(412);
    expect((await as(alice).patch(item.id, { name: 'x' }, { 'if-match': 'garbage' })).status).toBe(412);
    expect((await as(alice).patch(item.id, { name: 'any' }, { 'if-match': '*' })).status).toBe(200);
    expect((await as(alice).get(`/${item.id}`)).body.name).toBe('any');
  });

  it.each([
    ['an unknown field', { name: 'a', owner: 'bob' }, '/'],
    ['an empty name', { name: '' }, '/name'],
    ['a 201-character name', { name: 'x'.repeat(201) }, '/name'],
    ['a NUL byte', { name: 'a\u0000b' }, '/name'],
    ['a 2001-character description', { name: 'a', description: 'd'.repeat(2001) }, '/description'],
    ['21 tags', { name: 'a', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }, '/tags'],
    ['a 51-character tag', { name: 'a', tags: ['t'.repeat(51)] }, '/tags/0'],
    ['a number for a name', { name: 42 }, '/name'],
    ['a missing name', { description: 'x' }, '/name'],
    ['an array body', [{ name: 'a' }], '/'],
  ])('when the body has %s, then 400 naming the field', async (_what, body, path) => {
    const res = await as(alice).post(body);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(path);
  });

  it.each([
    ['/not-a-uuid', 400],
    ['?limit=0', 400],
    ['?limit=101', 400],
    ['?limit=1e3', 400],
    ['?limit=-1', 400],
    ['?order=random', 400],
    ['?cursor=%%%', 400],
    [`?cursor=${Buffer.from('["newest","2026-01-01 00:00:00+00","x"]').toString('base64url')}`, 400],
    [
      `?cursor=${Buffer.from('["newest","DROP TABLE items","00000000-0000-0000-0000-000000000000"]').toString('base64url')}`,
      400,
    ],
    ['?unknown=1', 400],
  ])('when the request is GET /v1/items%s, then %i', async (path, status) => {
    expect((await as(alice).get(path)).status).toBe(status);
  });

  it('when the PATCH body is empty or has unknown fields, then 400', async () => {
    const { body: item } = await as(alice).post({ name: 'p' });
    expect((await as(alice).patch(item.id, {})).status).toBe(400);
    expect((await as(alice).patch(item.id, { version: 99 })).status).toBe(400);
  });

  it('when fast-check generates arbitrary bodies, then POST and PATCH answer 2xx or 400, never 5xx', async () => {
    const { body: item } = await as(alice).post({ name: 'fuzz target' });
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const itemLike = fc.record(
      {
        name: fc.oneof(fc.string({ maxLength: 250 }), anyJson),
        description: fc.oneof(fc.string({ maxLength: 2100 }), fc.constant(null), anyJson),
        tags: fc.oneof(fc.array(fc.string({ maxLength: 60 }), { maxLength: 25 }), anyJson),
        extra: anyJson,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyJson, itemLike), async (body) => {
        // Raw JSON text: the client library must not get a say in how odd objects ({toString: ''}) serialize.
        const post = await request(t.app.server)
          .post('/v1/items')
          .set('x-api-key', alice)
          .set('content-type', 'application/json')
          .send(JSON.stringify(body));
        expect([201, 400]).toContain(post.status);
        const patch = await request(t.app.server)
          .patch(`/v1/items/${item.id}`)
          .set('x-api-key', alice)
          .set('content-type', 'application/json')
          .send(JSON.stringify(body));
        expect([200, 400]).toContain(patch.status);
        if (post.status === 400) expect(post.headers['content-type']).toContain('application/problem+json');
      }),
      { numRuns: 150 },
    );
  });
});

describe('items: idempotent creation', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp({ env: RATE });
    key = (await createKey(t.app, ['items:read', 'items:write'], { subject: 'idem' })).key;
  });
  afterAll(() => t.close());

  it('when a POST is retried with the same Idempotency-Key, then the item, its Location and ETag are replayed', async () => {
    const post = () =>
      request(t.app.server)
        .post('/v1/items')
        .set('x-api-key', key)
        .set('idempotency-key', 'k1')
        .send({ name: 'once' });
    const first = await post();
    const again = await post();
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.body).toEqual(first.body);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers.etag).toBe(first.headers.etag);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const { rows } = await t.app.db.query(`SELECT count(*)::int AS n FROM items WHERE name = 'once'`);
    expect(rows[0].n).toBe(1);
  });
});

describe('items: keyset pagination', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp({ env: RATE });
    key = (await createKey(t.app, ['items:read', 'items:write'], { subject: 'pager' })).key;
  });
  afterAll(() => t.close());

  const create = (name: string, tags: string[] = []) =>
    request(t.app.server).post('/v1/items').set('x-api-key', key).send({ name, tags }).expect(201);

  async function walk(query: string, during?: () => Promise<unknown>) {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/items?limit=7${query}${cursor ? `&cursor=${cursor}` : ''}`;
      const res: request.Response = await request(t.app.server).get(url).set('x-api-key', key);
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((i: { id: string }) => i.id));
      cursor = res.body.next;
      pages++;
      if (during) await during();
    } while (cursor && pages < 100);
    return seen;
  }

  it('when rows are inserted while paging, then every existing row is visited exactly once, in both orders', async () => {
    const existing: string[] = [];
    // Several rows share a millisecond: the cursor must carry microseconds to keep them apart.
    for (let batch = 0; batch < 6; batch++) {
      const res = await Promise.all(
        Array.from({ length: 8 }, (_, i) => create(`row ${batch}-${i}`, i % 2 ? ['odd'] : [])),
      );
      existing.push(...res.map((r) => r.body.id));
    }
    for (const order of ['newest', 'oldest']) {
      let n = 0;
      const seen = await walk(`&order=${order}`, () => create(`inserted during ${order} ${n++}`));
      expect(new Set(seen).size).toBe(seen.length);
      for (const id of existing) expect(seen).toContain(id);
    }
  });

  it('when filtering by tag or name prefix, then only matching rows come back', async () => {
    await create('apple pie', ['food']);
    await create('apple tart', ['food']);
    await create('banana', ['food']);
    const byPrefix = await request(t.app.server).get('/v1/items?namePrefix=apple').set('x-api-key', key);
    expect(byPrefix.body.items.map((i: { name: string }) => i.name).sort()).toEqual([
      'apple pie',
      'apple tart',
    ]);
    const byTag = await request(t.app.server).get('/v1/items?tag=food&limit=100').set('x-api-key', key);
    expect(byTag.body.items).toHaveLength(3);
    // LIKE wildcards are plain characters in a prefix.
    const wildcard = await request(t.app.server).get('/v1/items?namePrefix=%25').set('x-api-key', key);
    expect(wildcard.body.items).toHaveLength(0);
  });

  it('when a cursor of one order is used with the other, then 400', async () => {
    const page = await request(t.app.server).get('/v1/items?limit=1&order=newest').set('x-api-key', key);
    const res = await request(t.app.server)
      .get(`/v1/items?order=oldest&cursor=${page.body.next}`)
      .set('x-api-key', key);
    expect(res.status).toBe(400);
  });
});
