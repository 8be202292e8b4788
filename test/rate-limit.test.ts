import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { parseList } from 'structured-headers';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketParams, decide, GCRA_LUA } from '../src/lib/token-bucket.ts';
import { buildTestApp, createTestDatabase, type TestApp, type TestDatabase } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { type RedisServer, startRedisServer } from './helpers/redis-server.ts';

describe('token bucket math (GCRA)', () => {
  const p = bucketParams(5, 5000, 5); // 5 per 5 s: one token per second, capacity 5

  function run(times: number[]) {
    let tat: number | undefined;
    return times.map((now) => {
      const d = decide(tat, now, p);
      if (d.allowed) tat = d.tat;
      return d;
    });
  }

  it('when an idle client bursts, then exactly B pass and the next waits one interval', () => {
    const out = run([0, 0, 0, 0, 0, 0]);
    expect(out.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
    expect(out.map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0, 0]);
    expect(out[5]?.ttlMs).toBe(1000);
  });

  it('when the bucket refills, then one token returns per interval, never more than B after idling', () => {
    const out = run([0, 0, 0, 0, 0, 999, 1000, 1000, 100_000, 100_000, 100_000, 100_000, 100_000, 100_000]);
    expect(out.map((d) => d.allowed)).toEqual([
      true,
      true,
      true,
      true,
      true,
      false,
      true,
      false,
      true,
      true,
      true,
      true,
      true,
      false,
    ]);
    expect(out[5]?.ttlMs).toBe(1);
  });

  it('when a client sends at exactly rate R forever, then it is never rejected', () => {
    const times = Array.from({ length: 1000 }, (_, i) => i * 1000);
    expect(run(times).every((d) => d.allowed)).toBe(true);
  });

  it('when a request is allowed, then ttl is the time until the bucket is full again', () => {
    expect(run([0, 0])[1]?.ttlMs).toBe(2000);
  });

  it("when the Lua script runs in real Redis on Redis' clock, then it decides like the math from the same state", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    redis.defineCommand('gcra', { lua: GCRA_LUA, numberOfKeys: 1 });
    const key = `test:gcra:${randomUUID()}`;
    const perMinute = bucketParams(5, 300_000, 5); // one token per minute: none returns during the test
    const redisNow = async () => {
      const [s, us] = await redis.time();
      return Number(s) * 1000 + Number(us) / 1000;
    };
    try {
      const allowed: boolean[] = [];
      for (let i = 0; i < 7; i++) {
        const stored = await redis.get(key);
        const before = await redisNow();
        const [ok, remaining, ttl] = await redis.gcra(key, perMinute.intervalMs, perMinute.burst);
        const elapsed = (await redisNow()) - before;
        // The script read its clock between `before` and now: same decision, ttl later by at most that.
        const expected = decide(stored === null ? undefined : Number(stored) / 1000, before, perMinute);
        expect(ok === 1).toBe(expected.allowed);
        expect(remaining).toBe(expected.remaining);
        expect(ttl).toBeLessThanOrEqual(expected.ttlMs);
        expect(ttl).toBeGreaterThanOrEqual(expected.ttlMs - Math.ceil(elapsed) - 1);
        allowed.push(ok === 1);
      }
      expect(allowed).toEqual([true, true, true, true, true, false, false]);
      // One small int-encoded value (microseconds) per client, with a TTL: within 160 bytes per key.
      expect(await redis.pttl(key)).toBeGreaterThan(0);
      expect(await redis.object('ENCODING', key)).toBe('int');
      expect(await redis.memory('USAGE', key)).toBeLessThanOrEqual(160);
    } finally {
      await redis.del(key);
      redis.disconnect();
    }
  });

  it('when a limited client waits the ttl the script announced, then its next request passes', async () => {
    const redis = new Redis(TEST_REDIS_URL);
    redis.defineCommand('gcra', { lua: GCRA_LUA, numberOfKeys: 1 });
    const key = `test:gcra:${randomUUID()}`;
    const fast = bucketParams(10, 1000, 2); // one token per 100 ms, capacity 2
    try {
      const burst = [];
      for (let i = 0; i < 3; i++) burst.push(await redis.gcra(key, fast.intervalMs, fast.burst));
      expect(burst.map(([ok]) => ok)).toEqual([1, 1, 0]);
      const ttl = burst[2]?.[2] as number;
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(100);
      await new Promise((r) => setTimeout(r, ttl));
      expect((await redis.gcra(key, fast.intervalMs, fast.burst))[0]).toBe(1);
    } finally {
      await redis.del(key);
      redis.disconnect();
    }
  });
});

describe('rate limiting over shared Redis', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  describe('one instance with a small bucket', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await buildTestApp({
        db,
        env: { RATE_LIMIT_MAX_REQUESTS: '3', RATE_LIMIT_WINDOW_MS: '60000' },
        extend: (app) => {
          app.get('/test/strict', { config: { rateLimit: { max: 2, timeWindow: 30_000 } } }, async () => ({
            ok: true,
          }));
        },
      });
    });
    afterAll(() => t.close());

    it("when one principal exhausts its bucket, then another principal's is untouched", async () => {
      const a = await createKey(t.app, []);
      const b = await createKey(t.app, []);
      const statusesA = [];
      for (let i = 0; i < 4; i++)
        statusesA.push((await request(t.app.server).get('/v1/me').set('x-api-key', a.key)).status);
      expect(statusesA).toEqual([200, 200, 200, 429]);
      expect((await request(t.app.server).get('/v1/me').set('x-api-key', b.key)).status).toBe(200);
    });

    it('when an unmatched URL is requested, then its 404 is limited and carries the same headers', async () => {
      const res = await request(t.app.server).get('/no/such/route');
      expect(res.status).toBe(404);
      expect(res.headers['ratelimit-policy']).toBe('"default";q=3;w=60');
      expect(res.headers.ratelimit).toMatch(/^"default";r=\d+;t=\d+$/);
      expect(res.headers['x-ratelimit-remaining']).toBeDefined();
    });

    it('when headers are read, then they parse as structured fields and r decreases by one per request', async () => {
      const k = await createKey(t.app, []);
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await request(t.app.server).get('/v1/me').set('x-api-key', k.key);
        const [policy] = parseList(res.headers['ratelimit-policy'] as string);
        expect(policy?.[0]).toBe('default');
        expect(Object.fromEntries(policy?.[1] ?? [])).toEqual({ q: 3, w: 60 });
        const [limit] = parseList(res.headers.ratelimit as string);
        expect(limit?.[0]).toBe('default');
        const params = Object.fromEntries(limit?.[1] ?? []);
        expect(params.t).toBeGreaterThan(0);
        seen.push(params.r as number);
        expect(res.headers['x-ratelimit-limit']).toBe('3');
        expect(res.headers['x-ratelimit-remaining']).toBe(String(params.r));
        expect(Number(res.headers['x-ratelimit-reset'])).toBe(params.t);
      }
      expect(seen).toEqual([2, 1, 0]);
    });

    it('when a request is limited, then 429 problem+json with retryAfter and a Retry-After of at least the next token', async () => {
      const k = await createKey(t.app, []);
      for (let i = 0; i < 3; i++) await request(t.app.server).get('/v1/me').set('x-api-key', k.key);
      const res = await request(t.app.server).get('/v1/me').set('x-api-key', k.key);
      expect(res.status).toBe(429);
      expect(res.headers['content-type']).toBe('application/problem+json; charset=utf-8');
      expect(res.body).toMatchObject({ type: 'urn:problem-type:rate-limited', status: 429 });
      // One token per 20 s: the next one is at most 20 s away and never sooner than announced.
      expect(res.body.retryAfter).toBeGreaterThanOrEqual(19);
      expect(res.body.retryAfter).toBeLessThanOrEqual(20);
      expect(res.headers['retry-after']).toBe(String(res.body.retryAfter));
      expect(Object.fromEntries(parseList(res.headers.ratelimit as string)[0]?.[1] ?? []).r).toBe(0);
    });

    it('when a route overrides the limit, then it has its own policy and bucket', async () => {
      const k = await createKey(t.app, []);
      const statuses = [];
      for (let i = 0; i < 3; i++) {
        const res = await request(t.app.server).get('/test/strict').set('x-api-key', k.key);
        statuses.push(res.status);
        expect(res.headers['ratelimit-policy']).toBe('"route";q=2;w=30');
      }
      expect(statuses).toEqual([200, 200, 429]);
    });

    it('when probes and metrics are hit many times, then they are never limited', async () => {
      for (let i = 0; i < 8; i++) {
        for (const path of ['/health', '/ready', '/metrics']) {
          const res = await request(t.app.server).get(path);
          expect(res.status).toBe(200);
          expect(res.headers['x-ratelimit-limit']).toBeUndefined();
        }
      }
    });

    it('when unknown routes are scanned, then they are limited by client address', async () => {
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await request(t.app.server).get(`/scan/${i}`)).status);
      expect(statuses.slice(0, 2)).toEqual([404, 404]);
      expect(statuses.at(-1)).toBe(429);
    });

    it('when decisions are made, then they are counted by result and backend', async () => {
      const text = (await request(t.app.server).get('/metrics')).text;
      expect(text).toMatch(/rate_limit_decisions_total\{result="allowed",backend="redis"\} [1-9]/);
      expect(text).toMatch(/rate_limit_decisions_total\{result="limited",backend="redis"\} [1-9]/);
      expect(text).toContain('rate_limit_backend{backend="redis"} 1');
      expect(text).toContain('rate_limit_backend{backend="memory"} 0');
    });
  });

  it('when no proxy is trusted, then a forged X-Forwarded-For gives no new bucket', async () => {
    const t = await buildTestApp({
      db,
      env: { RATE_LIMIT_MAX_REQUESTS: '2', RATE_LIMIT_WINDOW_MS: '60000' },
    });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) {
        statuses.push(
          (await request(t.app.server).get('/nope').set('x-forwarded-for', `203.0.113.${i}`)).status,
        );
      }
      expect(statuses).toEqual([404, 404, 429, 429]);
    } finally {
      await t.close();
    }
  });

  it('when the proxy is trusted, then clients are told apart by address and IPv6 shares a bucket per /64', async () => {
    const t = await buildTestApp({
      db,
      env: { RATE_LIMIT_MAX_REQUESTS: '1', RATE_LIMIT_WINDOW_MS: '60000', TRUST_PROXY: '1' },
    });
    try {
      const from = async (ip: string) =>
        (await request(t.app.server).get('/nope').set('x-forwarded-for', ip)).status;
      expect(await from('203.0.113.1')).toBe(404);
      expect(await from('203.0.113.2')).toBe(404);
      expect(await from('203.0.113.1')).toBe(429);
      expect(await from('2001:db8:1:2::1')).toBe(404);
      expect(await from('2001:db8:1:2:ffff::9')).toBe(429); // same /64
      expect(await from('2001:db8:1:3::1')).toBe(404); // next /64
    } finally {
      await t.close();
    }
  });
});

describe('rate limiting on a Redis of its own (Cluster-ready calls)', () => {
  let redis: RedisServer | undefined;
  afterAll(() => redis?.kill());

  it("when many requests from two clients arrive at once, then each decision is one script call on its client's one key", async () => {
    redis = await startRedisServer();
    const t = await buildTestApp({
      redis: false,
      env: { REDIS_URL: redis.url, RATE_LIMIT_MAX_REQUESTS: '10', RATE_LIMIT_WINDOW_MS: '3600000' },
    });
    const admin = new Redis(redis.url);
    try {
      const a = await createKey(t.app, []);
      const b = await createKey(t.app, []);
      await admin.config('RESETSTAT');
      const statuses = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          request(t.app.server)
            .get('/v1/me')
            .set('x-api-key', i % 2 ? a.key : b.key)
            .then((r) => r.status),
        ),
      );
      expect(statuses.filter((s) => s === 200)).toHaveLength(20);
      expect(statuses.filter((s) => s === 429)).toHaveLength(10);

      // The first call on a connection is EVAL (ioredis loads the script), the rest EVALSHA.
      const stats = await admin.info('commandstats');
      const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
      expect(calls('eval') + calls('evalsha')).toBe(30);
      expect(stats).not.toMatch(/cmdstat_eval(sha)?:.*failed_calls=[1-9]/);

      const keys = await admin.keys(`${t.redisPrefix}rl:*`);
      expect(keys.sort()).toEqual([`${t.redisPrefix}rl:k:${a.id}`, `${t.redisPrefix}rl:k:${b.id}`].sort());
      for (const k of keys) {
        expect(await admin.object('ENCODING', k)).toBe('int');
        expect(await admin.pttl(k)).toBeGreaterThan(0);
      }
    } finally {
      admin.disconnect();
      await t.close();
    }
  });
});

describe('rate limiting when Redis dies and returns', () => {
  let redis: RedisServer | undefined;
  afterAll(() => redis?.kill());

  it('when Redis is killed mid-load, then the memory buckets take over with no 5xx and no slow request, then Redis takes back', async () => {
    redis = await startRedisServer();
    const t = await buildTestApp({
      redis: false,
      env: { REDIS_URL: redis.url, RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' },
    });
    try {
      const { key } = await createKey(t.app, []);
      const timings: { status: number; ms: number }[] = [];
      const hit = async () => {
        const started = performance.now();
        const res = await request(t.app.server).get('/v1/me').set('x-api-key', key);
        timings.push({ status: res.status, ms: performance.now() - started });
      };
      for (let i = 0; i < 20; i++) await hit();
      await redis.kill();
      for (let i = 0; i < 50; i++) await hit();
      let metrics = (await request(t.app.server).get('/metrics')).text;
      expect(metrics).toContain('rate_limit_backend{backend="memory"} 1');
      expect(metrics).toMatch(/rate_limit_decisions_total\{result="allowed",backend="memory"\} [1-9]/);

      await redis.start();
      const started = Date.now();
      while (!metrics.includes('rate_limit_backend{backend="redis"} 1') && Date.now() - started < 10_000) {
        await hit();
        await new Promise((r) => setTimeout(r, 100));
        metrics = (await request(t.app.server).get('/metrics')).text;
      }
      expect(metrics).toContain('rate_limit_backend{backend="redis"} 1');
      for (let i = 0; i < 10; i++) await hit();

      expect(timings.filter((x) => x.status >= 500)).toEqual([]);
      expect(timings.every((x) => x.status === 200)).toBe(true);
      expect(Math.max(...timings.map((x) => x.ms))).toBeLessThan(100);
      const warnings = t.logs.lines.filter(
        (l) => l.msg === 'rate limiter: Redis unavailable, using in-memory buckets',
      );
      expect(warnings).toHaveLength(1);
      expect(t.logs.lines.some((l) => l.msg === 'rate limiter: back on Redis')).toBe(true);
    } finally {
      await t.close();
    }
  });
});

describe('rate limiting switched off', () => {
  it('when RATE_LIMIT_ENABLED=false, then no route is limited and no limit headers are sent', async () => {
    const t = await buildTestApp({
      redis: false,
      env: { RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_MAX_REQUESTS: '1' },
    });
    try {
      const key = await createKey(t.app, []);
      for (let i = 0; i < 3; i++) {
        const res = await request(t.app.server).get('/v1/me').set('x-api-key', key.key);
        expect(res.status).toBe(200);
        expect(res.headers['x-ratelimit-limit']).toBeUndefined();
        expect(res.headers.ratelimit).toBeUndefined();
      }
      for (let i = 0; i < 3; i++) expect((await request(t.app.server).get('/nope')).status).toBe(404);
    } finally {
      await t.close();
    }
  });
});
