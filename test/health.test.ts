import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, createTestDatabase, type TestApp } from './helpers/app.ts';

describe('health and readiness over real Postgres and Redis', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp();
  });
  afterAll(() => t.close());

  it('when /health is called, then 200 with status, version and uptime', async () => {
    const res = await request(t.app.server).get('/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'ok',
      version: expect.any(String),
      uptimeSeconds: expect.any(Number),
    });
  });

  it('when Postgres and Redis are up, then /ready is 200 with both ok', async () => {
    const res = await request(t.app.server).get('/ready');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok' } });
  });

  it('when shutdown has begun, then /ready is 503 at once and /health stays 200', async () => {
    t.app.lifecycle.draining = true;
    try {
      const res = await request(t.app.server).get('/ready');
      expect(res.status).toBe(503);
      expect(res.body.status).toBe('shutting_down');
      expect(res.headers['retry-after']).toBeDefined();
      expect((await request(t.app.server).get('/health')).status).toBe(200);
    } finally {
      t.app.lifecycle.draining = false;
    }
  });
});

describe('readiness when a dependency is missing or down', () => {
  it('when REDIS_URL is not set, then redis is "disabled" and the service is ready', async () => {
    const t = await buildTestApp({ redis: false });
    try {
      const res = await request(t.app.server).get('/ready');
      expect(res.status).toBe(200);
      expect(res.body.checks).toEqual({ database: 'ok', redis: 'disabled' });
    } finally {
      await t.close();
    }
  });

  it('when Redis is unreachable, then the service stays ready with redis "degraded"', async () => {
    const t = await buildTestApp({
      redis: false,
      env: { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CONNECT_TIMEOUT_MS: '200' },
    });
    try {
      const res = await request(t.app.server).get('/ready');
      expect(res.status).toBe(200);
      expect(res.body.checks).toEqual({ database: 'ok', redis: 'degraded' });
      // One warning for the outage, not one per reconnect attempt.
      await new Promise((r) => setTimeout(r, 700));
      expect(t.logs.lines.filter((l) => String(l.msg).startsWith('redis unavailable'))).toHaveLength(1);
    } finally {
      await t.close();
    }
  });

  it('when Postgres is unreachable, then /ready is 503 naming the database', async () => {
    const db = await createTestDatabase();
    const t = await buildTestApp({
      db,
      redis: false,
      env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', DATABASE_CONNECT_TIMEOUT_MS: '300' },
    });
    try {
      const res = await request(t.app.server).get('/ready');
      expect(res.status).toBe(503);
      expect(res.body).toEqual({
        status: 'not_ready',
        checks: { database: 'unavailable', redis: 'disabled' },
      });
    } finally {
      await t.close();
      await db.drop();
    }
  });
});

describe('readiness as metrics', () => {
  it('when scraped, then app_ready and app_dependency_up report what /ready reports', async () => {
    const t = await buildTestApp();
    try {
      const text = (await request(t.app.server).get('/metrics')).text;
      expect(text).toContain('app_ready 1');
      expect(text).toContain('app_dependency_up{dependency="database"} 1');
      expect(text).toContain('app_dependency_up{dependency="redis"} 1');
      t.app.lifecycle.draining = true;
      expect((await request(t.app.server).get('/metrics')).text).toContain('app_ready 0');
      t.app.lifecycle.draining = false;
    } finally {
      await t.close();
    }
  });

  it('when Postgres is unreachable, then app_ready is 0 and the database dependency is down', async () => {
    const db = await createTestDatabase();
    const t = await buildTestApp({
      db,
      redis: false,
      env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', DATABASE_CONNECT_TIMEOUT_MS: '300' },
    });
    try {
      const text = (await request(t.app.server).get('/metrics')).text;
      expect(text).toContain('app_ready 0');
      expect(text).toContain('app_dependency_up{dependency="database"} 0');
      expect(text).not.toContain('app_dependency_up{dependency="redis"}');
    } finally {
      await t.close();
      await db.drop();
    }
  });
});
