import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';
import { percentile, scale, startLoad } from './load.ts';

describe('overload', () => {
  it('when one client bursts far past its bucket, then the excess gets 429 quickly and others are unaffected', async () => {
    const t = await buildTestApp({ env: { RATE_LIMIT_MAX_REQUESTS: '50', RATE_LIMIT_WINDOW_MS: '3600000' } });
    try {
      const greedy = (await createKey(t.app, [])).key;
      const polite = (await createKey(t.app, [])).key;
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (t.app.server.address() as { port: number }).port;
      const load = startLoad({
        port,
        concurrency: 100,
        maxMs: scale(2000, 15_000),
        next: () => ({ path: '/v1/me', headers: { 'x-api-key': greedy } }),
      });
      const samples = await load.done;
      expect(samples.filter((s) => s.status === 200)).toHaveLength(50);
      const limited = samples.filter((s) => s.status === 429);
      expect(limited.length).toBe(samples.length - 50);
      expect(
        limited.every((s) => s.retryAfter !== undefined && s.contentType?.includes('problem+json')),
      ).toBe(true);
      // Refusals stay cheap: latency does not grow as the burst goes on (an unbounded queue would make
      // the late refusals far slower than the early ones). Relative, so a busy machine cannot fail it.
      const half = Math.floor(limited.length / 2);
      const early = percentile(
        limited.slice(0, half).map((s) => s.ms),
        90,
      );
      const late = percentile(
        limited.slice(half).map((s) => s.ms),
        90,
      );
      expect(late).toBeLessThan(early * 3 + 50);
      expect((await request(t.app.server).get('/v1/me').set('x-api-key', polite)).status).toBe(200);
      expect((await request(t.app.server).get('/health')).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  describe('when handlers saturate the event loop', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await buildTestApp({
        redis: false,
        // under-pressure compares the mean timer delay (about one handler's length) with the limit.
        env: {
          PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '15',
          PRESSURE_RETRY_AFTER_S: '2',
          RATE_LIMIT_MAX_REQUESTS: '1000000',
          RATE_LIMIT_WINDOW_MS: '1000',
        },
        extend: (app) => {
          // An expensive handler: 25 ms of synchronous CPU per request.
          app.get('/test/burn', async () => {
            const until = performance.now() + 25;
            while (performance.now() < until) {}
            return { ok: true };
          });
        },
      });
      await t.app.listen({ port: 0, host: '127.0.0.1' });
    });
    afterAll(() => t.close());

    it('then requests are shed with 503 + Retry-After instead of queueing, and the process recovers when the burst stops', async () => {
      const port = (t.app.server.address() as { port: number }).port;
      const samples = await startLoad({
        port,
        concurrency: 40,
        maxMs: scale(3500, 20_000),
        next: () => ({ path: '/test/burn' }),
      }).done;
      const shed = samples.filter((s) => s.status === 503);
      expect(shed.length).toBeGreaterThan(0);
      expect(shed.every((s) => s.retryAfter === '2' && s.contentType?.includes('problem+json'))).toBe(true);
      expect(samples.filter((s) => s.status !== 200 && s.status !== 503)).toEqual([]);
      // Probes keep answering during the burst's aftermath, and service resumes.
      expect((await request(t.app.server).get('/health')).status).toBe(200);
      let status = 0;
      for (let i = 0; i < 40 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 100));
        status = (await request(t.app.server).get('/test/burn')).status;
      }
      expect(status).toBe(200);
    });
  });
});
