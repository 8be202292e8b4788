import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey, signToken } from './helpers/auth.ts';
import { notes } from './helpers/notes.ts';

const RATE = { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' };

describe('response cache', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;
  beforeAll(async () => {
    // A slow refill, so X-RateLimit-Remaining visibly moves between a MISS and a HIT.
    t = await buildTestApp({
      env: { RATE_LIMIT_MAX_REQUESTS: '1000', RATE_LIMIT_WINDOW_MS: '3600000' },
      extend: notes(),
    });
    alice = (await createKey(t.app, ['admin'], { subject: 'alice' })).key;
    bob = (await createKey(t.app, ['admin'], { subject: 'bob' })).key;
  });
  afterAll(() => t.close());

  const get = (key: string, path: string) => request(t.app.server).get(path).set('x-api-key', key);

  it('when a GET repeats, then MISS then HIT with the same body, fresh request id and fresh rate limit headers', async () => {
    const { body: note } = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', alice)
      .send({ name: 'cached' });
    const first = await get(alice, `/v1/notes/${note.id}`);
    const second = await get(alice, `/v1/notes/${note.id}`);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.body).toEqual(first.body);
    expect(second.headers.etag).toBe(first.headers.etag);
    expect(second.headers['cache-control']).toBe('private');
    expect(second.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
    expect(Number(second.headers['x-ratelimit-remaining'])).toBeLessThan(
      Number(first.headers['x-ratelimit-remaining']),
    );
  });

  it("when two principals GET the same URL, then neither is ever served the other's cached response", async () => {
    await request(t.app.server).post('/v1/notes').set('x-api-key', alice).send({ name: 'alice only' });
    await request(t.app.server).post('/v1/notes').set('x-api-key', bob).send({ name: 'bob only' });
    const a1 = await get(alice, '/v1/notes?limit=100');
    const a2 = await get(alice, '/v1/notes?limit=100');
    const b1 = await get(bob, '/v1/notes?limit=100');
    expect(a2.headers['x-cache']).toBe('HIT');
    expect(b1.headers['x-cache']).toBe('MISS');
    expect(a1.text).toContain('alice only');
    expect(b1.text).toContain('bob only');
    expect(b1.text).not.toContain('alice only');
  });

  it('when a write happens, then the next read sees it (list and single note)', async () => {
    const { body: note } = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', alice)
      .send({ name: 'before' });
    await get(alice, `/v1/notes/${note.id}`);
    await get(alice, '/v1/notes?limit=100');
    await request(t.app.server).patch(`/v1/notes/${note.id}`).set('x-api-key', alice).send({ name: 'after' });
    const read = await get(alice, `/v1/notes/${note.id}`);
    expect(read.headers['x-cache']).toBe('MISS');
    expect(read.body.name).toBe('after');
    const list = await get(alice, '/v1/notes?limit=100');
    expect(list.text).toContain('"after"');
    await request(t.app.server).delete(`/v1/notes/${note.id}`).set('x-api-key', alice);
    expect((await get(alice, `/v1/notes/${note.id}`)).status).toBe(404);
  });

  it('when the client sends Cache-Control: no-cache, then the origin answers and refreshes the cache', async () => {
    const { body: note } = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', alice)
      .send({ name: 'fresh' });
    await get(alice, `/v1/notes/${note.id}`);
    const bypass = await get(alice, `/v1/notes/${note.id}`).set('cache-control', 'no-cache');
    expect(bypass.headers['x-cache']).toBe('MISS');
    expect(bypass.body.name).toBe('fresh');
    expect((await get(alice, `/v1/notes/${note.id}`)).headers['x-cache']).toBe('HIT');
  });

  it('when a response is an error, then it is never cached', async () => {
    const id = randomUUID();
    const first = await get(alice, `/v1/notes/${id}`);
    const second = await get(alice, `/v1/notes/${id}`);
    expect([first.status, second.status]).toEqual([404, 404]);
    expect(second.headers['x-cache']).toBe('MISS');
  });

  it('when the cached note is requested with its ETag, then 304 from the cache', async () => {
    const { body: note } = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', alice)
      .send({ name: 'etag' });
    await get(alice, `/v1/notes/${note.id}`);
    const res = await get(alice, `/v1/notes/${note.id}`).set('if-none-match', '"v1"');
    expect(res.status).toBe(304);
    expect(res.headers['x-cache']).toBe('HIT');
  });

  it('when 500 GETs of a cold key arrive at once, then the database is queried once', async () => {
    const { body: note } = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', alice)
      .send({ name: 'hot' });
    // A JWT without an API key behind it: authentication itself needs no database.
    const token = signToken(t.app, { sub: 'alice' });
    const spy = vi.spyOn(t.app.db, 'query');
    try {
      const responses = await Promise.all(
        Array.from({ length: 500 }, () =>
          request(t.app.server).get(`/v1/notes/${note.id}`).set('authorization', `Bearer ${token}`),
        ),
      );
      expect(responses.every((r) => r.status === 200 && r.body.name === 'hot')).toBe(true);
      const noteQueries = spy.mock.calls.filter((c) => String(c[0]).includes('FROM notes'));
      expect(noteQueries).toHaveLength(1);
      expect(responses.filter((r) => r.headers['x-cache'] === 'MISS')).toHaveLength(1);
    } finally {
      spy.mockRestore();
    }
  });

  it('when lookups happen, then they are counted by tier and result', async () => {
    const text = (await request(t.app.server).get('/metrics')).text;
    expect(text).toMatch(/cache_requests_total\{tier="memory",result="hit"\} [1-9]/);
    expect(text).toMatch(/cache_requests_total\{tier="memory",result="miss"\} [1-9]/);
    expect(text).toMatch(/cache_requests_total\{tier="redis",result="miss"\} [1-9]/);
  });
});

describe('response cache without Redis', () => {
  it('when Redis is unreachable, then the memory tier serves with no 5xx and no stall', async () => {
    const t = await buildTestApp({
      redis: false,
      env: { ...RATE, REDIS_URL: 'redis://127.0.0.1:1', REDIS_CONNECT_TIMEOUT_MS: '100' },
      extend: notes(),
    });
    try {
      const key = (await createKey(t.app, ['admin'])).key;
      const { body: note } = await request(t.app.server)
        .post('/v1/notes')
        .set('x-api-key', key)
        .send({ name: 'offline' });
      const timings: number[] = [];
      const statuses: string[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const res = await request(t.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', key);
        timings.push(performance.now() - started);
        statuses.push(`${res.status} ${res.headers['x-cache']}`);
      }
      expect(statuses).toEqual(['200 MISS', '200 HIT', '200 HIT', '200 HIT', '200 HIT']);
      expect(Math.max(...timings)).toBeLessThan(100);
    } finally {
      await t.close();
    }
  });
});
