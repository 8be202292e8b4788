import pg from 'pg';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';
import { TEST_PG_ADMIN_URL } from '../helpers/env.ts';
import { notes } from '../helpers/notes.ts';
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
    // notes: a transactional, idempotent write (request.db) as a fork's resource would have one.
    t = await buildTestApp({ env: { ...RATE, DATABASE_POOL_MAX: '6' }, extend: notes() });
    key = (await createKey(t.app, ['admin'])).key;
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
              path: '/v1/notes',
              headers: { 'x-api-key': key, 'idempotency-key': `k-${i}` },
              body: JSON.stringify({ name: `note ${i}` }),
            }
          : i % 3 === 1
            ? {
                method: 'POST',
                path: '/v1/api-keys',
                headers: { 'x-api-key': key },
                body: JSON.stringify({ name: `key ${i}`, scopes: ['admin'] }),
              }
            : { path: '/v1/api-keys?limit=20', headers: { 'x-api-key': key } },
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
    const after = await request(t.app.server).get('/v1/api-keys?limit=5').set('x-api-key', key);
    expect(after.status).toBe(200);
    const write = await request(t.app.server)
      .post('/v1/notes')
      .set('x-api-key', key)
      .set('idempotency-key', 'after-the-faults')
      .send({ name: 'after' });
    expect(write.status).toBe(201);
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
      const { id } = await createKey(slow.app, ['admin'], { subject: 'locked' });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('SELECT * FROM api_keys WHERE id = $1 FOR UPDATE', [id]);
      const started = Date.now();
      // DELETE revokes: an UPDATE of the locked row, which waits on the lock past the timeout.
      const blocked = await request(slow.app.server).delete(`/v1/api-keys/${id}`).set('x-api-key', key);
      expect(blocked.status).toBe(503);
      expect(blocked.headers['retry-after']).toBeDefined();
      expect(blocked.text).not.toMatch(/canceling statement|timeout/i);
      expect(Date.now() - started).toBeLessThan(2000);
      await locker.query('ROLLBACK');
      const ok = await request(slow.app.server).delete(`/v1/api-keys/${id}`).set('x-api-key', key);
      expect(ok.status).toBe(204);
    } finally {
      await locker.end();
      await slow.close();
    }
  });
});
