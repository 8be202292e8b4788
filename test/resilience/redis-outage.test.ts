import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';
import { notes } from '../helpers/notes.ts';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { type RequestSpec, scale, startLoad } from './load.ts';

describe('Redis outage under load', () => {
  let redis: RedisServer | undefined;
  afterAll(() => redis?.kill());

  it('when the redis-server is killed mid-load and restarted, then no crash, no 5xx, fallbacks engage and everything returns to Redis', async () => {
    const server = await startRedisServer();
    redis = server;
    const t = await buildTestApp({
      redis: false,
      env: {
        REDIS_URL: server.url,
        RATE_LIMIT_MAX_REQUESTS: '1000000',
        RATE_LIMIT_WINDOW_MS: '1000',
      },
      extend: notes(),
    });
    try {
      const { key } = await createKey(t.app, ['admin']);
      const { body: note } = await request(t.app.server)
        .post('/v1/notes')
        .set('x-api-key', key)
        .send({ name: 'outage' });
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const appPort = (t.app.server.address() as { port: number }).port;

      // Cache reads, writes (cache invalidation + pub/sub), token checks and the limiter all touch Redis.
      const load = startLoad({
        port: appPort,
        concurrency: 6,
        maxMs: scale(4000, 30_000),
        next: (i): RequestSpec =>
          i % 4 === 0
            ? {
                method: 'PATCH',
                path: `/v1/notes/${note.id}`,
                headers: { 'x-api-key': key },
                body: JSON.stringify({ name: `n${i}` }),
              }
            : { path: i % 2 ? `/v1/notes/${note.id}` : '/v1/notes?limit=5', headers: { 'x-api-key': key } },
      });
      await new Promise((r) => setTimeout(r, 700));
      await server.kill();
      await new Promise((r) => setTimeout(r, scale(1000, 10_000)));
      const during = (await request(t.app.server).get('/metrics')).text;
      expect(during).toContain('rate_limit_backend{backend="memory"} 1');
      expect((await request(t.app.server).get('/ready')).body.checks.redis).toBe('degraded');
      // Bounded memory: nothing queues up waiting for Redis (no offline queue, no pending commands).
      const queues = t.app.redis as unknown as {
        offlineQueue: { length: number };
        commandQueue: { length: number };
      };
      expect(queues.offlineQueue.length).toBe(0);
      expect(queues.commandQueue.length).toBeLessThan(10);
      await server.start();
      const samples = await load.done;

      // Everything kept working: no 5xx, no transport errors, no request stuck on Redis.
      expect(samples.filter((s) => s.status === 0 || s.status >= 500)).toEqual([]);
      expect(samples.length).toBeGreaterThan(100);
      expect(Math.max(...samples.map((s) => s.ms))).toBeLessThan(500);

      // And came back: the limiter and the readiness check are on Redis again, the cache reads it.
      const started = Date.now();
      let metrics = '';
      while (Date.now() - started < 10_000) {
        metrics = (await request(t.app.server).get('/metrics')).text;
        if (metrics.includes('rate_limit_backend{backend="redis"} 1')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(metrics).toContain('rate_limit_backend{backend="redis"} 1');
      expect(metrics).toContain('redis_up 1');
      await new Promise((r) => setTimeout(r, 1100)); // past the readiness cache
      expect((await request(t.app.server).get('/ready')).body.checks.redis).toBe('ok');
      const read = await request(t.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', key);
      expect(read.status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
