import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';
import { TEST_PG_ADMIN_URL } from '../helpers/env.ts';
import { type RequestSpec, scale, startLoad } from './load.ts';

const RATE = { RATE_LIMIT_MAX_REQUESTS: '1000000', RATE_LIMIT_WINDOW_MS: '1000' };

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

describe('Postgres faults', () => {
  let t: TestApp;
  let key: string;
  let port: number;
  beforeAll(async () => {
    t = await buildTestApp({ env: { ...RATE, DATABASE_POOL_MAX: '6' } });
    key = (await createKey(t.app, ['items:read', 'items:write'])).key;
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as { port: number }).port;
  });
  afterAll(() => t.close());

  it('when every backend of the database is terminated mid-load, then requests get 503 + Retry-After at worst and the pool recovers without a restart or a leak', async () => {
    const load = startLoad({
      port,
      concurrency: 8,
      maxMs: scale(3000, 20_000),
      next: (i): RequestSpec =>
        i % 3 === 0
          ? {
              method: 'POST',
              path: '/v1/items',
              headers: { 'x-api-key': key, 'idempotency-key': `k-${i}` },
              body: JSON.stringify({ name: `item ${i}` }),
            }
          : { path: '/v1/items?limit=20', headers: { 'x-api-key': key, 'cache-control': 'no-cache' } },
    });
    let terminated = 0;
    for (let round = 0; round < scale(3, 15); round++) {
      await new Promise((r) => setTimeout(r, 500));
      terminated += await admin(async (c) => {
        const { rowCount } = await c.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [t.db.name],
        );
        return rowCount ?? 0;
      });
    }
    const samples = await load.done;
    expect(terminated).toBeGreaterThan(0);
    // Nothing but success or an honest 503 with Retry-After; never a 500, never a dropped connection.
    const unexpected = samples.filter((s) => ![200, 201, 503].includes(s.status));
    expect(unexpected).toEqual([]);
    for (const s of samples.filter((x) => x.status === 503)) {
      expect(s.retryAfter).toBeDefined();
      expect(s.contentType).toContain('application/problem+json');
    }
    // Recovered: the same pool serves again.
    const after = await request(t.app.server)
      .get('/v1/items?limit=5')
      .set('x-api-key', key)
      .set('cache-control', 'no-cache');
    expect(after.status).toBe(200);
    expect((await request(t.app.server).get('/ready')).status).toBe(200);
    // No leak: the pool never exceeds its size, on either side.
    expect(t.app.db.totalCount).toBeLessThanOrEqual(6);
    const open = await admin(
      async (c) =>
        (await c.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [t.db.name]))
          .rows[0].n as number,
    );
    expect(open).toBeLessThanOrEqual(6);
    const metrics = (await request(t.app.server).get('/metrics')).text;
    expect(metrics).toMatch(/pg_pool_errors_total [1-9]/);
  });

  it('when a statement is blocked past statement_timeout, then the request gets 503 with Retry-After and the next one succeeds', async () => {
    const slow = await buildTestApp({ db: t.db, env: { ...RATE, DATABASE_STATEMENT_TIMEOUT_MS: '300' } });
    const locker = new pg.Client({ connectionString: t.db.url });
    try {
      const { body: item } = await request(slow.app.server)
        .post('/v1/items')
        .set('x-api-key', key)
        .send({ name: 'locked' });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('SELECT * FROM items WHERE id = $1 FOR UPDATE', [item.id]);
      const started = Date.now();
      const blocked = await request(slow.app.server)
        .patch(`/v1/items/${item.id}`)
        .set('x-api-key', key)
        .send({ name: 'x' });
      expect(blocked.status).toBe(503);
      expect(blocked.headers['retry-after']).toBeDefined();
      expect(blocked.text).not.toMatch(/canceling statement|timeout/i);
      expect(Date.now() - started).toBeLessThan(2000);
      await locker.query('ROLLBACK');
      const ok = await request(slow.app.server)
        .patch(`/v1/items/${item.id}`)
        .set('x-api-key', key)
        .send({ name: 'y' });
      expect(ok.status).toBe(200);
    } finally {
      await locker.end();
      await slow.close();
    }
  });
});
