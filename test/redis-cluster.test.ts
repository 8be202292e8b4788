// Redis Cluster: how REDIS_CLUSTER_NODES is read, and what the service does when a master dies and
// its replica takes over (the multi-instance behaviour on a cluster is in topologies.test.ts).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig, maskConfig, parseClusterNodes } from '../src/config.ts';
import { buildDeployment, type Deployment, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';
import { notes } from './helpers/notes.ts';
import { REDIS_CLUSTER_UNAVAILABLE, type RedisCluster, startRedisCluster } from './helpers/redis-cluster.ts';

const run = promisify(execFile);

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    return err instanceof ConfigError ? err.problems : [String(err)];
  }
};

describe('REDIS_CLUSTER_NODES', () => {
  it('when seeds are host:port, then each becomes a node, without credentials or TLS', () => {
    expect(parseClusterNodes('10.0.0.1:7000, redis-1.internal:7001,[::1]:7002')).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: 'redis-1.internal', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      tls: false,
    });
  });

  it('when seeds are rediss:// URLs, then their password and TLS apply to every node, as with REDIS_URL', () => {
    expect(parseClusterNodes('rediss://app:s%40cret@a:6379,b:6379')).toEqual({
      nodes: [
        { host: 'a', port: 6379 },
        { host: 'b', port: 6379 },
      ],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
  });

  it('when entries disagree on credentials, lack a port or name a database, then the variable is refused', () => {
    expect(parseClusterNodes('rediss://:a@h:1,redis://:b@h:2')).toMatch(/same credentials/);
    expect(parseClusterNodes('h')).toMatch(/with a port/);
    expect(parseClusterNodes('redis://h:1/2')).toMatch(/no database number/);
    expect(problemsOf({ REDIS_CLUSTER_NODES: ' , ' })[0]).toMatch(/^REDIS_CLUSTER_NODES: must list/);
  });

  it('when REDIS_URL is set too, or the key prefix has a hash tag, then start-up is refused, naming both', () => {
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'h:1', REDIS_URL: 'redis://h:2' })).toEqual([
      'REDIS_URL and REDIS_CLUSTER_NODES: set one, not both',
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: 'h:1', REDIS_KEY_PREFIX: '{api}:' })).toEqual([
      'REDIS_KEY_PREFIX must not contain { or } with REDIS_CLUSTER_NODES',
    ]);
  });

  it('when the configuration is logged, then passwords in the seeds are masked', () => {
    const masked = maskConfig(loadConfig({ REDIS_CLUSTER_NODES: 'rediss://:hunter2@a:6379,b:6379' }));
    expect(masked.REDIS_CLUSTER_NODES).toBe('rediss://:***@a:6379,b:6379');
  });
});

if (REDIS_CLUSTER_UNAVAILABLE)
  console.warn(`redis-cluster: deployment cases skipped, ${REDIS_CLUSTER_UNAVAILABLE}`);

describe.skipIf(REDIS_CLUSTER_UNAVAILABLE !== undefined)('two instances on a Redis Cluster', () => {
  let cluster: RedisCluster;
  let deployment: Deployment;
  let a: TestApp;
  let b: TestApp;
  let admin: string;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    deployment = await buildDeployment(2, {
      extend: notes(),
      topology: cluster,
      // One token back every 3.6 s: a bucket's key lives that long after a request, showing where
      // decisions are made; ample for the ~150 requests of the test.
      env: {
        RATE_LIMIT_MAX_REQUESTS: '1000',
        RATE_LIMIT_WINDOW_MS: '3600000',
        REDIS_COMMAND_TIMEOUT_MS: '300',
      },
    });
    [a, b] = deployment.instances as [TestApp, TestApp];
    admin = (await createKey(a.app, ['admin'], { subject: 'failover' })).key;
  }, 60_000);
  afterAll(async () => {
    await deployment?.close();
    await cluster?.stop();
  });

  it('when the CLI revokes a key, then instances on the cluster drop it at once', async () => {
    const victim = await createKey(a.app, []);
    expect((await request(b.app.server).get('/v1/me').set('x-api-key', victim.key)).status).toBe(200);
    const { stdout } = await run(process.execPath, ['src/cli/auth.ts', 'revoke-api-key', victim.id], {
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'test',
        DATABASE_URL: deployment.db.url,
        ...cluster.env(),
        REDIS_KEY_PREFIX: deployment.redisPrefix,
        MIGRATE_ON_START: 'false',
      } as NodeJS.ProcessEnv,
      timeout: 30_000,
    });
    expect(stdout.trim()).toBe(`revoked ${victim.id}`);
    // Within the API-key cache's TTL only through the sharded channel: the CLI's message arrived.
    await vi.waitFor(
      async () =>
        expect((await request(b.app.server).get('/v1/me').set('x-api-key', victim.key)).status).toBe(401),
      { timeout: 2_000, interval: 50 },
    );
  });

  it('when a master dies, then requests keep being answered, and the limiter, cache and revocation return to Redis without a restart', async () => {
    // The master that carries the `auth` channel (revocations), and a client whose bucket lives there too.
    const victim = await cluster.masterOf(`${deployment.redisPrefix}auth`);
    let client: { id: string; key: string } | undefined;
    for (let i = 0; i < 30 && client === undefined; i++) {
      const candidate = await createKey(a.app, []);
      if ((await cluster.masterOf(`${deployment.redisPrefix}rl:k:${candidate.id}`)).port === victim.port)
        client = candidate;
    }
    if (client === undefined) throw new Error('no API key id hashed to the victim master in 30 tries');
    const me = (t: TestApp, key: string) => request(t.app.server).get('/v1/me').set('x-api-key', key);
    expect((await me(a, client.key)).status).toBe(200);

    await victim.kill();
    // Until the replica takes over (cluster-node-timeout 1 s, then an election), every request is
    // still answered: the limiter decides in memory, nothing waits longer than the command timeout.
    const statuses = new Set<number>();
    const slowest = { ms: 0 };
    const deadline = Date.now() + 15_000;
    let backOnRedis = false;
    while (Date.now() < deadline && !backOnRedis) {
      const started = performance.now();
      statuses.add((await me(a, client.key)).status);
      slowest.ms = Math.max(slowest.ms, performance.now() - started);
      const keys = await cluster.keys(`${deployment.redisPrefix}rl:k:${client.id}`).catch(() => []);
      backOnRedis = a.app.rateLimitBackend() === 'redis' && keys.length === 1;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect([...statuses]).toEqual([200]);
    expect(slowest.ms).toBeLessThan(2000);
    expect(backOnRedis).toBe(true);
    expect((await request(a.app.server).get('/ready')).status).toBe(200);

    // Revocation reaches the other instance through the channel's new master.
    const revoked = await createKey(a.app, []);
    expect((await me(b, revoked.key)).status).toBe(200);
    await request(a.app.server).delete(`/v1/api-keys/${revoked.id}`).set('x-api-key', admin).expect(204);
    const started = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - started < 5000) {
      status = (await me(b, revoked.key)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(401);
    expect(Date.now() - started).toBeLessThan(1000);

    // The cache's Redis tier serves one instance's fill to the other again.
    const { body: note } = await request(a.app.server)
      .post('/v1/notes')
      .set('x-api-key', admin)
      .send({ name: 'after failover' });
    await request(a.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin).expect(200);
    const fromB = await request(b.app.server).get(`/v1/notes/${note.id}`).set('x-api-key', admin);
    expect(fromB.headers['x-cache']).toBe('HIT');
  }, 60_000);
});
