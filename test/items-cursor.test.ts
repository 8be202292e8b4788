// Crafted cursors on the example resource's keyset page (the machinery's own: test/cursor.test.ts).
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../src/lib/cursor.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

const UUID = '00000000-0000-4000-8000-000000000000';

describe('items: crafted cursors', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp({ redis: false });
    key = (await createKey(t.app, ['items:read', 'items:write'])).key;
    for (const name of ['one', 'two', 'three']) {
      const res = await request(t.app.server).post('/v1/items').set('x-api-key', key).send({ name });
      expect(res.status).toBe(201);
    }
  });
  afterAll(() => t.close());

  const list = (query: string) => request(t.app.server).get(`/v1/items${query}`).set('x-api-key', key);
  const cursor = (ts: string, order = 'newest') => `?cursor=${encodeCursor([order, ts, UUID])}`;

  it.each([
    ['month 13, day 45, 25:61:61', '2026-13-45 25:61:61+00'],
    ['year 0000', '0000-01-01 00:00:00+00'],
    ['offset +99:99:99', '2026-01-01 00:00:00+99:99:99'],
    ['February 30', '2026-02-30 00:00:00+00'],
  ])('when the cursor holds %s, then 400 problem+json, never 500', async (_what, ts) => {
    const res = await list(cursor(ts));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(res.body).toMatchObject({ type: 'urn:problem-type:validation-error', detail: 'Invalid cursor.' });
  });

  it.each([
    ['year 0001', '0001-01-01 00:00:00+00'],
    ['offset +15:59:59', '2026-06-30 00:00:00+15:59:59'],
    ['February 29 of a leap year', '2024-02-29 12:00:00.123456-03:30'],
  ])('when the cursor holds an edge timestamp (%s), then it reaches Postgres: 200', async (_what, ts) => {
    expect((await list(cursor(ts, 'oldest') + '&order=oldest')).status).toBe(200);
  });

  it('when the next cursor of a real page is followed, then the following page answers', async () => {
    const first = await list('?limit=2');
    expect(first.status).toBe(200);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await list(`?limit=2&cursor=${first.body.next}`);
    expect(second.status).toBe(200);
    expect(second.body.items.map((i: { name: string }) => i.name)).toEqual(['one']);
    expect(second.body.next).toBeNull();
  });
});
