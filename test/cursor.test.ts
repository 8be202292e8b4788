import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, PG_TIMESTAMPTZ } from '../src/lib/cursor.ts';
import { HttpProblem } from '../src/lib/problem.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

const UUID = '00000000-0000-4000-8000-000000000000';
const KEY_ID = '0000000000000000';

/**
 * Shaped like Postgres' timestamptz text, but not text Postgres prints: its cast refuses most (500,
 * 22008/22009, before the check) and reads 24:00 and :60 as the next day or minute.
 */
const IMPOSSIBLE: [string, string][] = [
  ['month 13, day 45, 25:61:61', '2026-13-45 25:61:61+00'],
  ['year 0000', '0000-01-01 00:00:00+00'],
  ['offset +99:99:99', '2026-01-01 00:00:00+99:99:99'],
  ['February 30', '2026-02-30 00:00:00+00'],
  ['February 29 of a common year', '2023-02-29 00:00:00+00'],
  ['April 31', '2026-04-31 00:00:00+00'],
  ['day 00', '2026-01-00 00:00:00+00'],
  ['hour 24', '2026-01-01 24:00:00+00'],
  ['leap second 60', '2026-12-31 23:59:60+00'],
  ['offset of 16 hours', '2026-01-01 00:00:00-16:00'],
  ['offset minutes 60', '2026-01-01 00:00:00+05:60'],
];

/** The edges of what Postgres accepts: each must reach the query and answer 200. */
const EDGES: [string, string][] = [
  ['year 0001', '0001-01-01 00:00:00+00'],
  ['year 9999, microseconds', '9999-12-31 23:59:59.999999+00'],
  ['February 29 of a leap year', '2024-02-29 12:00:00.5+05:30'],
  ['February 29 of 2000', '2000-02-29 00:00:00+00'],
  ['offset +15:59:59', '2026-06-30 00:00:00+15:59:59'],
  ['offset -15:59', '2026-06-30 00:00:00-15:59'],
];

describe('cursor values', () => {
  it.each(IMPOSSIBLE)('when a timestamp has %s, then it is refused', (_what, value) => {
    expect(PG_TIMESTAMPTZ.test(value)).toBe(false);
    expect(() =>
      decodeCursor(encodeCursor(['newest', value, UUID]), [/^newest$/, PG_TIMESTAMPTZ, /./]),
    ).toThrow(HttpProblem);
  });

  it.each(EDGES)('when a timestamp is at an edge (%s), then it is accepted', (_what, value) => {
    expect(PG_TIMESTAMPTZ.test(value)).toBe(true);
  });

  it.each([
    ['a date only', '2026-01-01'],
    ['ISO 8601 with T and Z', '2026-01-01T00:00:00Z'],
    ['seven fraction digits', '2026-01-01 00:00:00.1234567+00'],
    ['text around it', ' 2026-01-01 00:00:00+00'],
    ['no offset', '2026-01-01 00:00:00'],
  ])('when a timestamp is not in Postgres text form (%s), then it is refused', (_what, value) => {
    expect(PG_TIMESTAMPTZ.test(value)).toBe(false);
  });

  it('when a cursor is undecodable or of the wrong length or types, then 400', () => {
    for (const cursor of [
      '%%%',
      encodeCursor([]),
      encodeCursor(['newest']),
      'bnVsbA',
      encodeCursor([1, 2, 3]),
    ]) {
      const err = (() => {
        try {
          decodeCursor(cursor, [/^newest$/, PG_TIMESTAMPTZ, /./]);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(HttpProblem);
      expect(err).toMatchObject({ statusCode: 400, code: 'validation-error' });
    }
  });
});

// GET /v1/api-keys is the machinery's keyset page; the example resource's list is tested the
// same way in items-cursor.test.ts (which goes with it when it is removed).
describe('cursors over HTTP: GET /v1/api-keys', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    t = await buildTestApp({
      redis: false,
      env: { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' },
    });
    key = (await createKey(t.app, ['admin'])).key;
    for (let i = 0; i < 2; i++) await createKey(t.app, ['admin']);
  });
  afterAll(() => t.close());

  const get = (path: string) => request(t.app.server).get(path).set('x-api-key', key);
  const url = (ts: string) => `/v1/api-keys?cursor=${encodeCursor([ts, KEY_ID])}`;

  it.each(IMPOSSIBLE)('when the cursor holds %s, then 400 problem+json, never 500', async (_what, ts) => {
    const res = await get(url(ts));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(res.body).toMatchObject({
      type: 'urn:problem-type:validation-error',
      detail: 'Invalid cursor.',
      requestId: res.headers['x-request-id'],
    });
  });

  it.each(EDGES)(
    'when the cursor holds an edge timestamp (%s), then Postgres takes it: 200',
    async (_w, ts) => {
      const res = await get(url(ts));
      expect(res.status, res.text).toBe(200);
    },
  );

  it('when the next cursor of a real page is followed, then the following page answers', async () => {
    const first = await get('/v1/api-keys?limit=2');
    expect(first.status).toBe(200);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await get(`/v1/api-keys?limit=2&cursor=${first.body.next}`);
    expect(second.status).toBe(200);
    expect(second.body.items).toHaveLength(1);
    const ids = [...first.body.items, ...second.body.items].map((k: { id: string }) => k.id);
    expect(new Set(ids).size).toBe(3);
  });
});
