// `npm run bench:topologies`: issue 18's targets, each side by side in one run, rounds alternated.
// 1. The limiter's cost per decision on a Redis Cluster of three masters against one Redis: the
//    service's own client (src/lib/redis-client.ts) and script (src/lib/token-bucket.ts), driven
//    directly, with the CPU of every redis-server and of this process read from /proc.
// 2. The uncached hot path (GET /v1/items/:id, Cache-Control: no-cache) of the real service with
//    DATABASE_URL through PgBouncer in transaction mode against the same service connected directly.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.ts';
import { createRedisClient, type RedisClient } from '../src/lib/redis-client.ts';
import { bucketParams, GCRA_COMMAND, GCRA_LUA } from '../src/lib/token-bucket.ts';
import { PGBOUNCER_BIN, startPgBouncer } from '../test/helpers/pgbouncer.ts';
import { freePort } from '../test/helpers/process.ts';
import { startRedisCluster } from '../test/helpers/redis-cluster.ts';
import { Cleanup } from './lib/cleanup.ts';
import { createBenchEnv, runNode } from './lib/environment.ts';
import { createFixtures } from './lib/fixtures.ts';
import { type LoadResult, runLoad } from './lib/load.ts';
import { table } from './lib/markdown.ts';
import { cpuMs } from './lib/proc.ts';
import { REPO_ROOT, ServerProcess, sleep } from './lib/server-process.ts';
import { median } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    'in-flight': { type: 'string', default: '16,100,400' },
    only: { type: 'string' },
    out: { type: 'string', default: join(REPO_ROOT, 'bench/results') },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION_S = Number(values.duration);
const CONNECTIONS = Number(values.connections);
/**
 * Decisions in flight at once, as that many concurrent requests would have: a cluster splits them
 * over its masters, so each master's batches are smaller and its cost per decision higher at low
 * concurrency. The target is judged at 100, the load `npm run bench` applies (100 connections).
 */
const IN_FLIGHT = values['in-flight'].split(',').map(Number);
const JUDGED_AT = 100;
/** Distinct clients (keys): spread over every slot, as real traffic is. */
const CLIENTS = 10_000;
const IDLE_MS = 3000;

const cleanup = new Cleanup();
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    cleanup.run().finally(() => process.exit(130));
  });

interface LimiterRun {
  decisions: number;
  redisUsPerDecision: number;
  clientUsPerDecision: number;
  decisionsPerSec: number;
}

/** Runs decisions for DURATION_S over CLIENTS keys, `inFlight` at a time. */
async function driveLimiter(
  client: RedisClient,
  serverPids: number[],
  prefix: string,
  inFlight: number,
): Promise<LimiterRun> {
  const p = bucketParams(1_000_000, 1000, 1_000_000);
  const serverCpu = () => serverPids.reduce((sum, pid) => sum + (cpuMs(pid) ?? 0), 0);
  const gcra = (key: string) =>
    client.gcra(`${prefix}${key}`, p.intervalMs, p.burst) as Promise<[number, number, number]>;
  // Warm: every script loaded on every master, connections open.
  await Promise.all(Array.from({ length: 200 }, (_, i) => gcra(`c${i}`)));
  // What the servers burn with no traffic (timers; on a cluster, the bus's heartbeats too) is not
  // the decisions' cost: measured idle, then subtracted pro rata.
  const idle0 = serverCpu();
  await sleep(IDLE_MS);
  const idleMsPerMs = (serverCpu() - idle0) / IDLE_MS;
  const cpu0 = serverCpu();
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + DURATION_S * 1000;
  let decisions = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await gcra(`c${next++ % CLIENTS}`);
        decisions++;
      }
    }),
  );
  const elapsedMs = performance.now() - t0;
  const clientCpu = process.cpuUsage(client0);
  return {
    decisions,
    redisUsPerDecision: ((serverCpu() - cpu0 - idleMsPerMs * elapsedMs) * 1000) / decisions,
    clientUsPerDecision: (clientCpu.user + clientCpu.system) / decisions,
    decisionsPerSec: decisions / (elapsedMs / 1000),
  };
}

async function startSingleRedis(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', ''], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100; i++) {
    const probe = createRedisClient(loadConfig({ REDIS_URL: `redis://127.0.0.1:${port}` }));
    const ok = await probe?.connect().then(
      () => true,
      () => false,
    );
    probe?.disconnect();
    if (ok) break;
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid as number,
    stop: async () => {
      child.kill('SIGKILL');
    },
  };
}

type LimiterRuns = Map<number, { single: LimiterRun[]; cluster: LimiterRun[] }>;

async function limiterComparison(): Promise<LimiterRuns> {
  const single = await startSingleRedis();
  cleanup.add('stop the single redis-server', single.stop);
  const cluster = await startRedisCluster({ replicas: 0 });
  cleanup.add('stop the redis cluster', cluster.stop);
  const clients = {
    single: createRedisClient(loadConfig({ REDIS_URL: single.url })) as RedisClient,
    cluster: createRedisClient(loadConfig({ REDIS_CLUSTER_NODES: cluster.nodes })) as RedisClient,
  };
  for (const [name, client] of Object.entries(clients)) {
    client.defineCommand(GCRA_COMMAND, { lua: GCRA_LUA, numberOfKeys: 1 });
    await client.connect();
    cleanup.add(`disconnect ${name}`, () => client.disconnect());
  }
  const runs: LimiterRuns = new Map();
  for (const inFlight of IN_FLIGHT) {
    const level = { single: [] as LimiterRun[], cluster: [] as LimiterRun[] };
    runs.set(inFlight, level);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of ['single', 'cluster'] as const) {
        const run = await driveLimiter(
          clients[name],
          name === 'single' ? [single.pid] : cluster.pids,
          `bench:${process.pid}:rl:`,
          inFlight,
        );
        level[name].push(run);
        process.stderr.write(
          `limiter ${inFlight} in flight, round ${round} ${name}: ${run.decisionsPerSec.toFixed(0)}/s, redis ${run.redisUsPerDecision.toFixed(1)} µs, client ${run.clientUsPerDecision.toFixed(1)} µs per decision\n`,
        );
      }
    }
  }
  return runs;
}

async function pgbouncerComparison(): Promise<{ direct: LoadResult[]; pgbouncer: LoadResult[] } | undefined> {
  if (PGBOUNCER_BIN === undefined) {
    process.stderr.write(
      'pgbouncer is not installed (apt-get install pgbouncer): that comparison is skipped\n',
    );
    return undefined;
  }
  const env = await createBenchEnv(cleanup, { jwtExpiresIn: '1h' });
  const bouncer = await startPgBouncer({ defaultPoolSize: 20 });
  cleanup.add('stop pgbouncer', bouncer.stop);
  const through = {
    DATABASE_URL: bouncer.url(env.databaseName),
    MIGRATE_DATABASE_URL: env.databaseUrl,
    DATABASE_POOL_MODE: 'transaction',
  };
  // The migrate step sets the statement timeout as the role's default in this database.
  await runNode(
    ['src/cli/migrate.ts', 'up'],
    env.serverEnv({ port: 0, name: 'cli', extra: through }),
    env.source.root,
  );
  const start = async (name: 'direct' | 'pgbouncer') => {
    const port = await freePort();
    return ServerProcess.start({
      name,
      args: ['src/main.ts'],
      env: env.serverEnv({ port, name, extra: name === 'pgbouncer' ? through : {} }),
      port,
      readyPath: '/ready',
      logPath: '/dev/null',
      cleanup,
      cwd: env.source.root,
    });
  };
  const servers = { direct: await start('direct'), pgbouncer: await start('pgbouncer') };
  const fixtures = await createFixtures(servers.direct.baseUrl, env);
  const results = { direct: [] as LoadResult[], pgbouncer: [] as LoadResult[] };
  for (const name of ['direct', 'pgbouncer'] as const) {
    // Warm-up, unmeasured: JIT, pools filled.
    await runLoad({
      baseUrl: servers[name].baseUrl,
      request: fixtures.requests.itemUncached,
      connections: CONNECTIONS,
      durationS: 2,
    });
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const name of ['direct', 'pgbouncer'] as const) {
      const r = await runLoad({
        baseUrl: servers[name].baseUrl,
        request: fixtures.requests.itemUncached,
        connections: CONNECTIONS,
        durationS: DURATION_S,
        server: servers[name],
        cleanup,
      });
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      results[name].push(r);
      process.stderr.write(
        `uncached read round ${round} ${name}: ${r.reqPerSec.toFixed(0)} req/s, p99 ${r.latencyMs.p99} ms, ${r.cpuUsPerReq?.toFixed(0)} µs CPU/req, infra ${r.infraCpuPct.toFixed(0)} %\n`,
      );
    }
  }
  return results;
}

async function main() {
  const limiter = await limiterComparison();
  const pg = values.only === 'limiter' ? undefined : await pgbouncerComparison();

  const m = (runs: LimiterRun[], f: (r: LimiterRun) => number) => median(runs.map(f));
  const ratio = (level: { single: LimiterRun[]; cluster: LimiterRun[] }, f: (r: LimiterRun) => number) =>
    m(level.cluster, f) / m(level.single, f);
  const judged = limiter.get(JUDGED_AT);
  const judgedRatio = judged ? ratio(judged, (r) => r.redisUsPerDecision) : Number.NaN;
  const lines = [
    `# Topologies: Redis Cluster and PgBouncer (issue 18), ${new Date().toISOString()}`,
    '',
    `${ROUNDS} rounds of ${DURATION_S} s, alternated; medians. Node ${process.version}.`,
    '',
    `## Limiter: the service's client and script over ${CLIENTS} clients, one Redis vs a cluster of 3 masters`,
    '',
    'Redis CPU: every redis-server of the topology, minus what they burn idle.',
    '',
    table(
      [
        'in flight',
        'decisions/s, one / cluster',
        'Redis CPU µs/decision, one / cluster',
        'cluster / one',
        'client CPU µs/decision, one / cluster',
      ],
      [...limiter].map(([inFlight, level]) => [
        inFlight,
        `${m(level.single, (r) => r.decisionsPerSec).toFixed(0)} / ${m(level.cluster, (r) => r.decisionsPerSec).toFixed(0)}`,
        `${m(level.single, (r) => r.redisUsPerDecision).toFixed(1)} / ${m(level.cluster, (r) => r.redisUsPerDecision).toFixed(1)}`,
        `${ratio(level, (r) => r.redisUsPerDecision).toFixed(2)}x`,
        `${m(level.single, (r) => r.clientUsPerDecision).toFixed(1)} / ${m(level.cluster, (r) => r.clientUsPerDecision).toFixed(1)}`,
      ]),
    ),
    '',
    judged
      ? `Redis CPU per decision at ${JUDGED_AT} in flight, cluster / one Redis: **${judgedRatio.toFixed(2)}x** (target at most 1.5x: ${judgedRatio <= 1.5 ? 'met' : 'NOT met'}).`
      : `(The target is judged at ${JUDGED_AT} in flight, not measured in this run.)`,
    '',
  ];
  if (pg) {
    const rps = (runs: LoadResult[]) => median(runs.map((r) => r.reqPerSec));
    const cpu = (runs: LoadResult[]) => median(runs.map((r) => r.cpuUsPerReq ?? Number.NaN));
    const p99 = (runs: LoadResult[]) => median(runs.map((r) => r.latencyMs.p99));
    const ratio = rps(pg.pgbouncer) / rps(pg.direct);
    lines.push(
      `## Uncached read (GET /v1/items/:id, no-cache), ${CONNECTIONS} connections`,
      '',
      table(
        ['', 'req/s', 'p99 ms', 'service CPU µs/req'],
        (['direct', 'pgbouncer'] as const).map((name) => [
          name === 'direct' ? 'direct Postgres' : 'through PgBouncer (transaction)',
          rps(pg[name]).toFixed(0),
          p99(pg[name]).toFixed(0),
          cpu(pg[name]).toFixed(0),
        ]),
      ),
      '',
      `req/s through PgBouncer / direct: **${ratio.toFixed(2)}** (target at least 0.85, i.e. within 15 %: ${ratio >= 0.85 ? 'met' : 'NOT met'}).`,
      '',
    );
  }
  const text = lines.join('\n');
  mkdirSync(values.out, { recursive: true });
  const file = join(values.out, `${new Date().toISOString().replace(/:/g, '-').slice(0, 19)}Z-topologies.md`);
  writeFileSync(file, text);
  process.stdout.write(`${text}\nwritten to ${file}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench:topologies failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup.run());
