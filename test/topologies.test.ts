// What replicas share, proven on every topology the service supports: one Redis and direct Postgres,
// a Redis Cluster (three masters, three replicas), and Postgres through PgBouncer in transaction mode.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDeployment,
  buildTestApp,
  type Deployment,
  SINGLE_REDIS,
  type TestApp,
  type Topology,
} from './helpers/app.ts';
import { createKey, signToken } from './helpers/auth.ts';
import { notes } from './helpers/notes.ts';
import { PGBOUNCER_BIN, PGBOUNCER_MISSING, startPgBouncer, transactionPoolEnv } from './helpers/pgbouncer.ts';
import { REDIS_CLUSTER_UNAVAILABLE, startRedisCluster } from './helpers/redis-cluster.ts';

const RATE = { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' };

if (REDIS_CLUSTER_UNAVAILABLE)
  console.warn(`topologies: Redis Cluster cases skipped, ${REDIS_CLUSTER_UNAVAILABLE}`);
if (PGBOUNCER_BIN === undefined) console.warn(`topologies: PgBouncer cases skipped, ${PGBOUNCER_MISSING}`);

interface Case {
  name: string;
  skip: boolean;
  start(): Promise<{ topology: Topology; stop(): Promise<void> }>;
}

const CASES: Case[] = [
  {
    name: 'one Redis, direct Postgres',
    skip: false,
    start: async () => ({ topology: SINGLE_REDIS, stop: async () => {} }),
  },
  {
    name: 'Redis Cluster',
    skip: REDIS_CLUSTER_UNAVAILABLE !== undefined,
    async start() {
      const cluster = await startRedisCluster();
      return {
        topology: cluster,
        stop: cluster.stop,
      };
    },
  },
  {
    name: 'PgBouncer in transaction mode',
    skip: PGBOUNCER_BIN === undefined,
    async start() {
      const bouncer = await startPgBouncer();
      // The app's pool goes through PgBouncer; migrations (and the statement timeout's role default) go direct.
      return {
        topology: { ...SINGLE_REDIS, env: (db) => transactionPoolEnv(bouncer, db) },
        stop: bouncer.stop,
      };
    },
  },
];

describe.each(CASES)('on $name', ({ skip, start }) => {
  let topology: Topology;
  let stop: () => Promise<void> = async () => {};
  let deployment: Deployment;
  let a: TestApp;
  let b: TestApp;
  let admin: string;

  beforeAll(async () => {
    if (skip) return;
    ({ topology, stop } = await start());
    deployment = await buildDeployment(2, { topology, env: RATE, extend: notes() });
    [a, b] = deployment.instances as [TestApp, TestApp];
    admin = (await createKey(a.app, ['admin'], { subject: 'shared' })).key;
  }, 60_000);
  afterAll(async () => {
    await deployment?.close();
    await stop();
  });

  it.skipIf(skip)('when the service starts, then /ready reports Redis and the database ok', async () => {
    const res = await request(a.app.server).get('/ready');
    expect(res.status).toBe(200);
    expect(res.body.checks).toEqual({ database: 'ok', redis: 'ok' });
  });

  it.skipIf(skip)(
    'when 200 requests race through 3 instances at capacity 100, then exactly 100 pass',
    async () => {
      // 100 per hour: no token comes back during the test.
      const limited = await buildDeployment(3, {
        topology,
        env: { RATE_LIMIT_MAX_REQUESTS: '100', RATE_LIMIT_WINDOW_MS: '3600000' },
      });
      try {
        const apps = limited.instances;
        const { key } = await createKey(apps[0]!.app, []);
        const statuses = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            request(apps[i % 3]!.app.server)
              .get('/v1/me')
              .set('x-api-key', key)
              .then((r) => r.status),
          ),
        );
        expect(statuses.filter((s) => s === 200)).toHaveLength(100);
        expect(statuses.filter((s) => s === 429)).toHaveLength(100);
        // Every decision was Redis's: one key for the one client, shared by the instances, and it expires.
        const keys = await topology.keys(`${limited.redisPrefix}rl:*`);
        expect(keys).toHaveLength(1);
        expect(keys[0]?.pttl).toBeGreaterThan(0);
      } finally {
        await limited.close();
      }
    },
    60_000,
  );

  it.skipIf(skip)('when one instance filled the cache, then another serves it from Redis', async () => {
    const { body: note } = await request(a.app.server)
      .post('/v1/notes')
      .set('x-api-key', admin)
      .send({ name: 'shared' });
    const first = await request(a.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
    expect(first.headers['x-cache']).toBe('MISS');
    const fromB = await request(b.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
    expect(fromB.headers['x-cache']).toBe('HIT');
    expect(fromB.body.name).toBe('shared');
  });

  it.skipIf(skip)(
    'when a note is patched through instance A, then instance B never serves the old state',
    async () => {
      const { body: note } = await request(a.app.server)
        .post('/v1/notes')
        .set('x-api-key', admin)
        .send({ name: 'v1' });
      for (let round = 2; round <= 30; round++) {
        // B holds the current state in its memory tier...
        await request(b.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
        const hit = await request(b.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
        expect(hit.body.name).toBe(`v${round - 1}`);
        // ...A writes, and B's very next read must be the new state.
        await request(a.app.server)
          .patch(`/v1/notes/${note.id}`)
          .set('x-api-key', admin)
          .send({ name: `v${round}` })
          .expect(200);
        const after = await request(b.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
        expect(after.body.name).toBe(`v${round}`);
      }
    },
  );

  it.skipIf(skip)(
    'when a key is revoked on instance A, then instance B (which had it cached) refuses it within 1 s',
    async () => {
      const victim = await createKey(a.app, []);
      expect((await request(b.app.server).get('/v1/me').set('x-api-key', victim.key)).status).toBe(200);
      await request(a.app.server).delete(`/v1/api-keys/${victim.id}`).set('x-api-key', admin).expect(204);
      const started = Date.now();
      let status = 200;
      while (status === 200 && Date.now() - started < 5000) {
        status = (await request(b.app.server).get('/v1/me').set('x-api-key', victim.key)).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 20));
      }
      expect(status).toBe(401);
      // Through Redis pub/sub this is near-immediate, far inside API_KEY_CACHE_TTL_MS.
      expect(Date.now() - started).toBeLessThan(1000);
    },
  );

  it.skipIf(skip)(
    'when a token is revoked on instance A, then instance B refuses it, and so does an instance started later',
    async () => {
      const token = signToken(a.app, { sub: 'carol' });
      const me = (t: TestApp) => request(t.app.server).get('/v1/me').set('authorization', `Bearer ${token}`);
      expect((await me(b)).status).toBe(200);
      const res = await request(a.app.server)
        .post('/v1/auth/revoke')
        .set('authorization', `Bearer ${token}`)
        .send({ token });
      expect(res.body).toEqual({ revoked: true });
      await new Promise((r) => setTimeout(r, 100));
      expect((await me(b)).status).toBe(401);
      // A third instance starting later loads the revocation from Redis.
      const c = await buildTestApp({
        db: deployment.db,
        redisPrefix: deployment.redisPrefix,
        env: { ...topology.env(deployment.db), ...RATE },
      });
      try {
        expect((await me(c)).status).toBe(401);
      } finally {
        await c.close();
      }
    },
  );

  it.skipIf(skip)(
    'when a POST is retried with the same idempotency key on another instance, then the first response is replayed',
    async () => {
      const first = await request(a.app.server)
        .post('/v1/notes')
        .set('x-api-key', admin)
        .set('idempotency-key', 'retry-1')
        .send({ name: 'once' });
      // Same JSON, other whitespace: still the same request.
      const again = await request(b.app.server)
        .post('/v1/notes')
        .set('x-api-key', admin)
        .set('idempotency-key', 'retry-1')
        .set('content-type', 'application/json')
        .send('{  "name":"once"}');
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
      expect(again.headers.location).toBe(first.headers.location);
      expect(again.headers['content-type']).toBe(first.headers['content-type']);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      const { rows } = await a.app.db.query(`SELECT count(*)::int AS n FROM notes WHERE name = 'once'`);
      expect(rows[0].n).toBe(1);
    },
  );

  it.skipIf(skip)(
    'when the same idempotency key races on two instances, then one row exists and every response is it',
    async () => {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          request((i % 2 ? a : b).app.server)
            .post('/v1/notes')
            .set('x-api-key', admin)
            .set('idempotency-key', 'race-1')
            .send({ name: 'raced' }),
        ),
      );
      expect(results.map((r) => r.status)).toEqual(Array(10).fill(201));
      expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
      const { rows } = await a.app.db.query(`SELECT count(*)::int AS n FROM notes WHERE name = 'raced'`);
      expect(rows[0].n).toBe(1);
    },
  );
});
