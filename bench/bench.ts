// `npm run bench`: the service against a bare Fastify control, scenario by scenario (issues 8, 4 and 14).
//
// Everything runs on this machine: the service (`node src/main.ts` on this Node, NODE_ENV=production,
// info JSON logs to a file) on real Postgres and Redis, the control in its own process, autocannon in
// this one; with --baseline, also an older build on the system's Node 20 beside it. Servers are loaded
// in turn, A B A B, because two cores shared with Postgres and Redis make single runs noisy.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BaselineBuild, prepareBaseline } from './lib/baseline.ts';
import { Cleanup } from './lib/cleanup.ts';
import { createBenchEnv, fillKeys, unfillKeys, usedMemory } from './lib/environment.ts';
import { createFixtures, type Fixtures } from './lib/fixtures.ts';
import { runLoad } from './lib/load.ts';
import { loopbackOtlpPort, type OtlpSink, startOtlpSink } from './lib/otlp-sink.ts';
import { runPaced } from './lib/paced-load.ts';
import { runtimeStats, scrape, sumOf } from './lib/prometheus.ts';
import { renderReport } from './lib/report.ts';
import type {
  BenchReport,
  HalfLoadResult,
  KeyspaceResult,
  LimiterKeyState,
  RateLimitedResult,
  ScenarioResult,
  ServerKind,
  StartSamples,
  StartupResult,
} from './lib/results.ts';
import { type RunnerContext, runScenario, type Scenario, waitForQuiet } from './lib/runner.ts';
import { REPO_ROOT, sleep } from './lib/server-process.ts';
import { IMAGE_NODE_OPTIONS, Servers } from './lib/servers.ts';
import { compileCacheFiles } from './lib/snapshot.ts';
import { max, median } from './lib/stats.ts';
import { evaluateTargets } from './lib/targets.ts';

const SCENARIOS = {
  health: 'GET /health, public: no auth, no rate limit, no cache',
  'item-jwt':
    'hot path: GET /v1/items/:id with a JWT (auth, Redis limiter, cache hit, metrics, access log); --baseline joins it',
  'half-load': 'hot path at 50% of its saturated req/s: p99 (autocannon overallRate, and evenly paced)',
  'item-apikey': 'GET /v1/items/:id with an API key (cache hit)',
  'item-uncached': 'GET /v1/items/:id with a JWT and Cache-Control: no-cache (Postgres, cache refill)',
  list: 'GET /v1/items?limit=20 with a JWT (cache hit)',
  'list-uncached': 'GET /v1/items?limit=20 with a JWT and Cache-Control: no-cache (Postgres)',
  create: 'POST /v1/items with a JWT (insert, cache invalidation)',
  limiter: 'issue 4: GET /v1/me with a JWT, limiter on Redis / in memory / off, and the control',
  keyspace: 'GET /v1/me, Redis limiter with ~1 key, then with 1M other keys in the keyspace',
  'rate-limited': 'GET /v1/me against a 100 req/min limit: 429s expected, limiter accuracy and key state',
} as const;
type ScenarioId = keyof typeof SCENARIOS;
const SCENARIO_IDS = Object.keys(SCENARIOS) as ScenarioId[];

const HELP = `usage: npm run bench -- [options]

  --duration <s>      measured seconds per run (default 5)
  --warmup <s>        discarded seconds before each run (default 1)
  --rounds <n>        A B rounds per scenario (default 3)
  --connections <n>   autocannon connections (default 100)
  --scenarios <list>  comma-separated subset (default: all); --list shows them
  --starts <n>        production starts measured for start-to-ready, after one unmeasured start
                      that warms the compile cache (default 7; 0 skips)
  --fill-keys <n>     keys written for the keyspace scenario (default 1000000)
  --patience <s>      total seconds spent waiting for a quiet machine and repeating runs that
                      something outside the bench contended (default 180; 0 never waits)
  --baseline <ref>    also run that git ref's build (e.g. 6f27b15, the last Node 20 one) on the
                      system Node, beside this tree: hot path, start-up and RSS (default off)
  --node-options <s>  NODE_OPTIONS for this tree's service (default: docker/Dockerfile's, as production)
  --service-env <k=v> an environment variable for this tree's service, repeatable (e.g. the OTEL_*
                      ones, to measure tracing: the bench otherwise strips every key src/config.ts reads);
                      an OTLP endpoint on 127.0.0.1 gets a sink from the bench unless one listens there
  --baseline-node <p> the Node.js that installs, builds and runs the baseline (default /usr/bin/node;
                      npm is the one next to it)
  --max-minutes <n>   hard deadline: clean up and exit 1 past it (default 20; 30 with --baseline)
  --out <dir>         where results go (default bench/results)
  --render <json>     only re-render <json>'s markdown (targets re-judged) next to it, then exit
`;

function readOptions() {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '100' },
      scenarios: { type: 'string' },
      starts: { type: 'string', default: '7' },
      'fill-keys': { type: 'string', default: '1000000' },
      baseline: { type: 'string' },
      'node-options': { type: 'string', default: IMAGE_NODE_OPTIONS },
      'service-env': { type: 'string', multiple: true, default: [] },
      'baseline-node': { type: 'string', default: '/usr/bin/node' },
      'max-minutes': { type: 'string' },
      patience: { type: 'string', default: '180' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench/results') },
      list: { type: 'boolean', default: false },
      render: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (values.list) {
    for (const id of SCENARIO_IDS) process.stdout.write(`${id.padEnd(14)} ${SCENARIOS[id]}\n`);
    process.exit(0);
  }
  const positive = (name: string, value: string, allowZero = false) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
      process.stderr.write(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} number\n${HELP}`);
      process.exit(2);
    }
    return n;
  };
  const scenarios = values.scenarios ? values.scenarios.split(',').map((s) => s.trim()) : [...SCENARIO_IDS];
  for (const s of scenarios)
    if (!SCENARIO_IDS.includes(s as ScenarioId)) {
      process.stderr.write(`unknown scenario ${s}; --list shows them\n`);
      process.exit(2);
    }
  return {
    durationS: positive('duration', values.duration),
    warmupS: positive('warmup', values.warmup, true),
    rounds: Math.round(positive('rounds', values.rounds)),
    connections: Math.round(positive('connections', values.connections)),
    scenarios: new Set(scenarios as ScenarioId[]),
    starts: Math.round(positive('starts', values.starts, true)),
    fillKeys: Math.round(positive('fill-keys', values['fill-keys'])),
    baseline: values.baseline,
    baselineNode: values['baseline-node'],
    nodeOptions: values['node-options'],
    serviceEnv: Object.fromEntries(
      values['service-env'].map((pair) => {
        const at = pair.indexOf('=');
        if (at < 1) {
          process.stderr.write(`--service-env takes KEY=VALUE, not ${pair}\n`);
          process.exit(2);
        }
        return [pair.slice(0, at), pair.slice(at + 1)];
      }),
    ) as Record<string, string>,
    maxMinutes: positive('max-minutes', values['max-minutes'] ?? (values.baseline ? '30' : '20')),
    patienceS: positive('patience', values.patience, true),
    outDir: values.out,
    render: values.render,
  };
}
type Options = ReturnType<typeof readOptions>;

const log = (message: string) => process.stderr.write(`${message}\n`);

/** One start of `kind` measured and stopped again: main-thread CPU and wall time to the first /ready 200. */
async function measuredStart(ctx: RunnerContext, kind: Exclude<ServerKind, 'control'>, logName: string) {
  const s = await ctx.servers.startService(kind, { logName });
  const ready = await s.readyLine();
  await s.stop(); // a graceful exit: that is when Node writes the compile cache
  s.removeLog();
  return { cpuMs: s.readyMainThreadCpuMs, wallMs: s.readyWallMs, ready };
}

/**
 * Production starts (NODE_ENV=production, real Postgres and Redis, docs off, MIGRATE_ON_START=false,
 * migrated before), each a new process stopped again. One unmeasured start first fills the run's
 * private compile cache, as the image does at build time. With --baseline its starts alternate with
 * these (its V8 code cache is a build artifact; it gets the same unmeasured start).
 */
async function measureStartup(ctx: RunnerContext, count: number, baseline: boolean): Promise<StartupResult> {
  const warm = await measuredStart(ctx, 'service', 'start-warm');
  const cacheDir = ctx.env.source.compileCacheDir;
  const result: StartupResult = {
    mainThreadCpuMs: [],
    wallMs: [],
    startupMs: [],
    compileCacheDir: warm.ready?.compileCacheDir ?? undefined,
    compileCacheFiles: compileCacheFiles(cacheDir),
  };
  log(
    `  warm-up start: ${warm.cpuMs.toFixed(0)} ms main-thread CPU, ${warm.wallMs.toFixed(0)} ms wall; ` +
      `compile cache ${result.compileCacheDir ?? 'off'}: ${result.compileCacheFiles} files`,
  );
  const kinds: ('service' | 'baseline')[] = ['service'];
  if (baseline) {
    await measuredStart(ctx, 'baseline', 'start-baseline-warm');
    result.baseline = { mainThreadCpuMs: [], wallMs: [], startupMs: [], compileCache: [] };
    kinds.push('baseline');
  }
  for (let i = 0; i < count; i++) {
    for (const kind of kinds) {
      await waitForQuiet(ctx);
      const m = await measuredStart(ctx, kind, `start-${kind}-${i}`);
      const samples: StartSamples = kind === 'service' ? result : (result.baseline as StartSamples);
      samples.mainThreadCpuMs.push(m.cpuMs);
      samples.wallMs.push(m.wallMs);
      samples.startupMs.push(m.ready?.startupMs ?? Number.NaN);
      if (kind === 'baseline') result.baseline?.compileCache.push(m.ready?.compileCache ?? 'unknown');
      log(
        `  start ${i + 1} ${kind.padEnd(8)}: ${m.cpuMs.toFixed(0)} ms main-thread CPU, ${m.wallMs.toFixed(0)} ms wall ` +
          `to /ready 200, startupMs ${m.ready?.startupMs ?? '?'}` +
          (kind === 'baseline' ? `, code cache ${m.ready?.compileCache ?? '?'}` : ''),
      );
    }
  }
  // Also with MIGRATE_ON_START=true (nothing pending): what a single-replica deployment pays.
  const s = await ctx.servers.startService('service', {
    overrides: { MIGRATE_ON_START: 'true' },
    logName: 'start-migrate',
  });
  result.withMigrateOnStart = {
    wallMs: s.readyWallMs,
    mainThreadCpuMs: s.readyMainThreadCpuMs,
    startupMs: (await s.readyLine())?.startupMs,
  };
  await s.stop();
  s.removeLog();
  log(
    `  start with MIGRATE_ON_START=true: ${s.readyMainThreadCpuMs.toFixed(0)} ms main-thread CPU, ${s.readyWallMs.toFixed(0)} ms wall`,
  );
  return result;
}

/** Every key under `pattern`: has it a TTL, and what does one cost (MEMORY USAGE)? */
async function limiterKeyState(
  ctx: RunnerContext,
  when: string,
  pattern: string,
  quiet = false,
): Promise<LimiterKeyState> {
  const redis = ctx.env.redis;
  const state: LimiterKeyState = { when, pattern, keys: 0, withTtl: 0, withoutTtl: 0, expired: 0 };
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      if (key.includes(':fill-')) continue;
      state.keys++;
      const pttl = await redis.pttl(key);
      // -1: no expiry (a leak); -2: expired since SCAN saw it (fine); >= 0: has a TTL.
      if (pttl === -1) state.withoutTtl++;
      else if (pttl === -2) state.expired++;
      else {
        state.withTtl++;
        if (state.sampleKey === undefined) {
          const usage = (await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) as number | null;
          if (usage !== null) {
            state.sampleKey = key;
            state.sampleMemoryUsage = usage;
            state.samplePttlMs = pttl;
          }
        }
      }
    }
  } while (cursor !== '0');
  if (!quiet) logKeyState(state);
  return state;
}

function logKeyState(state: LimiterKeyState): void {
  log(
    `  limiter keys ${state.pattern} (${state.when}): ${state.keys} keys, ${state.withoutTtl} without TTL, ` +
      `MEMORY USAGE ${state.sampleMemoryUsage ?? '—'} B (${state.sampleKey ?? 'none live'})`,
  );
}

async function runHalfLoad(
  ctx: RunnerContext,
  fx: Fixtures,
  saturated: number | undefined,
): Promise<HalfLoadResult> {
  log('\n[half-load] hot path at 50% of its saturated throughput');
  const service = await ctx.servers.get('service');
  const control = await ctx.servers.get('control');
  const { durationS, warmupS, rounds, connections } = ctx.settings;
  const request = fx.requests.itemJwt;
  if (saturated === undefined) {
    await runLoad({ baseUrl: service.baseUrl, request, connections, durationS: Math.max(1, warmupS) });
    saturated = (await runLoad({ baseUrl: service.baseUrl, request, connections, durationS })).reqPerSec;
  }
  const rate = Math.max(1, Math.round(saturated / 2));
  const runs: HalfLoadResult['runs'] = [];
  for (let round = 1; round <= rounds; round++) {
    const base = { baseUrl: service.baseUrl, request, connections, cleanup: ctx.cleanup };
    await waitForQuiet(ctx);
    if (warmupS > 0) await runLoad({ ...base, durationS: warmupS, overallRate: rate });
    const autocannon = await runLoad({ ...base, durationS, overallRate: rate, server: service });
    await waitForQuiet(ctx);
    if (warmupS > 0) await runPaced({ ...base, rate, durationS: warmupS });
    const before = await scrape(service.baseUrl);
    const pacedStart = performance.now();
    const paced = await runPaced({ ...base, rate, durationS });
    const pacedRuntime = runtimeStats(
      before,
      await scrape(service.baseUrl),
      (performance.now() - pacedStart) / 1000,
    );
    await waitForQuiet(ctx);
    const controlPaced = await runPaced({ ...base, baseUrl: control.baseUrl, rate, durationS });
    runs.push({ round, autocannon, paced, pacedRuntime, controlPaced });
    log(
      `  round ${round} rate ${rate}/s: autocannon p50 ${autocannon.latencyMs.p50} p99 ${autocannon.latencyMs.p99} ms; ` +
        `paced p50 ${paced.fromDueMs.p50.toFixed(2)} p99 ${paced.fromDueMs.p99.toFixed(2)} ms (from send ${paced.fromSendMs.p99.toFixed(2)}); ` +
        `control paced p99 ${controlPaced.fromDueMs.p99.toFixed(2)} ms; service GC ${pacedRuntime.gcPct.toFixed(1)}% of the time, ` +
        `${pacedRuntime.gcOver10ms} pauses > 10 ms, loop delay max ${pacedRuntime.loopDelayMaxMs.toFixed(1)} ms`,
    );
  }
  const ac = runs.map((r) => r.autocannon);
  const pc = runs.map((r) => r.paced);
  return {
    saturatedReqPerSec: saturated,
    rate,
    connections,
    autocannon: {
      p50Ms: median(ac.map((a) => a.latencyMs.p50)),
      p99Ms: median(ac.map((a) => a.latencyMs.p99)),
      p99MaxMs: max(ac.map((a) => a.latencyMs.p99)),
      reqPerSec: median(ac.map((a) => a.reqPerSec)),
      errors: ac.reduce((n, a) => n + a.errors, 0),
      non2xx: ac.reduce((n, a) => n + a.non2xx, 0),
    },
    paced: {
      p50Ms: median(pc.map((p) => p.fromDueMs.p50)),
      p99Ms: median(pc.map((p) => p.fromDueMs.p99)),
      p99MaxMs: max(pc.map((p) => p.fromDueMs.p99)),
      p99FromSendMs: median(pc.map((p) => p.fromSendMs.p99)),
      achievedPerSec: median(pc.map((p) => p.achievedPerSec)),
      errors: pc.reduce((n, p) => n + p.errors, 0),
      non2xx: pc.reduce((n, p) => n + p.non2xx, 0),
    },
    controlPaced: {
      p50Ms: median(runs.map((r) => r.controlPaced.fromDueMs.p50)),
      p99Ms: median(runs.map((r) => r.controlPaced.fromDueMs.p99)),
      achievedPerSec: median(runs.map((r) => r.controlPaced.achievedPerSec)),
    },
    runs,
  };
}

async function runKeyspace(
  ctx: RunnerContext,
  me: Scenario,
  fillCount: number,
  states: LimiterKeyState[],
): Promise<KeyspaceResult> {
  const base: Scenario = { ...me, targets: ['service', 'control'] };
  const prefix = ctx.env.redisPrefix('svc');
  const few = await runScenario(ctx, {
    ...base,
    id: 'keyspace-few',
    title: 'Redis limiter, keyspace with ~1 limiter key',
  });
  states.push(await limiterKeyState(ctx, 'after keyspace-few', `${prefix}rl:*`));

  log(
    `\n[keyspace] writing ${fillCount.toLocaleString('en-US')} keys under ${prefix}rl:k:fill-* (TTL 15 min)`,
  );
  const fillPrefix = `${prefix}rl:k:fill-`;
  const unregister = ctx.cleanup.add('delete filler keys', () =>
    unfillKeys(ctx.env.redis, fillPrefix, fillCount),
  );
  const memBefore = await usedMemory(ctx.env.redis);
  const t0 = performance.now();
  // Shaped like a limiter entry: the TAT in integer microseconds, which Redis keeps int-encoded.
  const tat = String(Math.floor((Date.now() + 60_000) * 1000));
  await fillKeys(ctx.env.redis, fillPrefix, fillCount, tat, 15 * 60_000);
  const fillSeconds = (performance.now() - t0) / 1000;
  const memAfter = await usedMemory(ctx.env.redis);
  const fillerMemoryUsage = (await ctx.env.redis.call('MEMORY', 'USAGE', `${fillPrefix}0`, 'SAMPLES', '0')) as
    | number
    | null;
  log(
    `  filled in ${fillSeconds.toFixed(1)} s; used_memory grew ${((memAfter - memBefore) / 2 ** 20).toFixed(1)} MB`,
  );

  const many = await runScenario(ctx, {
    ...base,
    id: 'keyspace-1m',
    title: `Redis limiter, keyspace with ${fillCount.toLocaleString('en-US')} other keys`,
  });
  log('  deleting the filler keys');
  await unfillKeys(ctx.env.redis, fillPrefix, fillCount);
  unregister();
  return {
    fillKeys: fillCount,
    bytesPerFillerKey: (memAfter - memBefore) / fillCount,
    fillerMemoryUsage: fillerMemoryUsage ?? undefined,
    fillSeconds,
    few,
    many,
  };
}

async function runRateLimited(
  ctx: RunnerContext,
  me: Scenario,
  states: LimiterKeyState[],
): Promise<RateLimitedResult> {
  const server = await ctx.servers.get('limited');
  const t0 = performance.now();
  const scenario = await runScenario(ctx, {
    ...me,
    id: 'rate-limited',
    title: 'GET /v1/me against RATE_LIMIT_MAX_REQUESTS=100 per 60 s (429 expected)',
    targets: ['limited'],
    rateLimited: true,
  });
  const elapsedS = (performance.now() - t0) / 1000;
  const metrics = await scrape(server.baseUrl);
  const allowed = sumOf(metrics, 'rate_limit_decisions_total', { result: 'allowed' });
  const limited = sumOf(metrics, 'rate_limit_decisions_total', { result: 'limited' });
  states.push(await limiterKeyState(ctx, 'after rate-limited (100/min)', `${ctx.env.redisPrefix('rl')}rl:*`));
  const codes = scenario.targets[0]?.statusCodes ?? {};
  const other = Object.entries(codes)
    .filter(([c]) => c !== '200' && c !== '429')
    .reduce((n, [, v]) => n + v, 0);
  // Bucket of 100, one token per 600 ms, starting full at the first request.
  const expectedAllowedMax = 100 + Math.ceil((elapsedS * 1000) / 600) + 1;
  if (allowed > expectedAllowedMax)
    scenario.problems.push(
      `rate-limited: ${allowed} requests allowed, at most ${expectedAllowedMax} expected`,
    );
  if (other > 0) scenario.problems.push(`rate-limited: ${other} responses neither 200 nor 429`);
  await ctx.servers.stop('limited');
  return { scenario, allowed, expectedAllowedMax, limited, other, elapsedS };
}

function allScenarios(report: BenchReport): ScenarioResult[] {
  return [
    ...report.scenarios,
    ...(report.keyspace ? [report.keyspace.few, report.keyspace.many] : []),
    ...(report.rateLimited ? [report.rateLimited.scenario] : []),
  ];
}

/** How much of the run shared the machine with something else: not a service problem, a data-quality one. */
function contentionNotes(scenarios: ScenarioResult[]): string[] {
  let runs = 0;
  let repeated = 0;
  const kept: string[] = [];
  for (const s of scenarios) {
    let contended = 0;
    let n = 0;
    for (const t of s.targets) {
      n += t.rounds;
      contended += t.contendedRuns;
      repeated += t.repeatedRuns;
    }
    runs += n;
    if (contended > 0) kept.push(`${s.id} ${contended}/${n}`);
  }
  if (repeated === 0 && kept.length === 0) return [];
  return [
    `Contention: ${repeated} run(s) were repeated because processes outside the bench used over 30% of a core; ` +
      (kept.length > 0
        ? `runs kept although still contended: ${kept.join(', ')} (${runs} runs in all). Their req/s and ratios are unreliable; CPU µs/req suffers less.`
        : 'every kept run was quiet.'),
  ];
}

function gitInfo(): BenchReport['git'] {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    return {
      commit: git('rev-parse', '--short', 'HEAD'),
      srcDirty: git('status', '--porcelain', 'src') !== '',
    };
  } catch {
    return { commit: 'unknown', srcDirty: false };
  }
}

async function main(opts: Options, cleanup: Cleanup) {
  const startedAt = new Date();
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      node: process.version,
      serviceNodeOptions: opts.nodeOptions,
      ...(Object.keys(opts.serviceEnv).length > 0 ? { serviceEnv: opts.serviceEnv } : {}),
      loadAvgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
      memoryGB: Math.round(os.totalmem() / 2 ** 30),
    },
    git: gitInfo(),
    options: {
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      rounds: opts.rounds,
      connections: opts.connections,
      scenarios: [...opts.scenarios],
      starts: opts.starts,
      fillKeys: opts.fillKeys,
      patienceS: opts.patienceS,
      baseline: opts.baseline,
    },
    scenarios: [],
    limiterState: [],
    targets: [],
    problems: [],
    dataQuality: [],
    notes: [],
  };
  if (report.machine.loadAvgAtStart[0] !== undefined && report.machine.loadAvgAtStart[0] > 0.5)
    report.dataQuality.push(
      `The 1-minute load average was ${report.machine.loadAvgAtStart[0]} at start: something else was running.`,
    );

  // Before anything is measured: installing and building it keeps both cores busy for minutes.
  let baseline: BaselineBuild | undefined;
  if (opts.baseline) {
    baseline = await prepareBaseline(opts.baseline, opts.baselineNode, cleanup, log);
    const { ref, commit, nodeVersion, prepareSeconds } = baseline;
    report.baseline = { ref, commit, node: nodeVersion, prepareSeconds: Math.round(prepareSeconds) };
  }

  log(`bench: creating database and credentials (Redis prefix bench:${process.pid}:)`);
  const env = await createBenchEnv(cleanup, { jwtExpiresIn: `${Math.ceil(opts.maxMinutes) + 30}m` });
  report.git.snapshotAt = env.source.takenAt;
  // Tracing measured: a receiver on the loopback endpoint the service exports to (unless one runs there).
  const otlpPort = loopbackOtlpPort(opts.serviceEnv);
  let otlpSink: OtlpSink | undefined;
  if (otlpPort !== undefined) otlpSink = await startOtlpSink(otlpPort, cleanup, log);
  const servers = new Servers(env, cleanup, baseline, opts.nodeOptions, opts.serviceEnv);
  const ctx: RunnerContext = {
    env,
    servers,
    cleanup,
    settings: opts,
    patience: { leftS: opts.patienceS },
    log,
  };

  if (opts.starts > 0) {
    log(
      `\n[start-up] production starts of src/main.ts${baseline ? ' and of the baseline' : ''} (MIGRATE_ON_START=false)`,
    );
    report.startup = await measureStartup(ctx, opts.starts, baseline !== undefined);
    const st = report.startup;
    // Node reports a subfolder per Node version and V8 flags.
    if (!st.compileCacheDir?.startsWith(env.source.compileCacheDir) || st.compileCacheFiles === 0)
      report.dataQuality.push(
        `The compile cache was not warm: the ready line reported ${st.compileCacheDir ?? 'none'}, ` +
          `${st.compileCacheFiles} files in ${env.source.compileCacheDir} after the warm-up start.`,
      );
  }

  const service = await servers.get('service');
  const baselineServer = baseline ? await servers.get('baseline') : undefined;
  await sleep(3000); // let start-up garbage settle before calling it idle
  const rssMB = (s: { rss(): number | undefined }) => (s.rss() ?? Number.NaN) / 2 ** 20;
  report.idleRssMB = { afterStart: rssMB(service) };
  if (baselineServer) report.idleRssMB.baseline = { afterStart: rssMB(baselineServer) };
  log(
    `\nidle RSS after start: ${report.idleRssMB.afterStart.toFixed(1)} MB` +
      (baselineServer ? ` (baseline ${report.idleRssMB.baseline?.afterStart.toFixed(1)} MB)` : ''),
  );

  const fx = await createFixtures(service.baseUrl, env);
  servers.setControlRoutes(fx.controlRoutes);

  const rq = fx.requests;
  const scenario = (
    id: ScenarioId,
    request: Scenario['request'],
    extra: Partial<Scenario> = {},
  ): Scenario => ({
    id,
    title: SCENARIOS[id],
    request,
    targets: ['service', 'control'],
    status: 200,
    ...extra,
  });
  const me = scenario('limiter', rq.me);
  const want = (id: ScenarioId) => opts.scenarios.has(id);

  // Order matters: `create` invalidates the owner's cache tag, so the cached reads run before it.
  if (want('health')) report.scenarios.push(await runScenario(ctx, scenario('health', rq.health)));
  let hotPath: ScenarioResult | undefined;
  if (want('item-jwt')) {
    const targets: ServerKind[] = baseline ? ['service', 'baseline', 'control'] : ['service', 'control'];
    hotPath = await runScenario(ctx, scenario('item-jwt', rq.itemJwt, { cache: 'HIT', targets }));
    report.scenarios.push(hotPath);
  }
  if (want('half-load'))
    report.halfLoad = await runHalfLoad(
      ctx,
      fx,
      hotPath?.targets.find((t) => t.server === 'service')?.reqPerSec,
    );
  if (want('item-apikey'))
    report.scenarios.push(await runScenario(ctx, scenario('item-apikey', rq.itemApiKey, { cache: 'HIT' })));
  if (want('item-uncached'))
    report.scenarios.push(
      await runScenario(ctx, scenario('item-uncached', rq.itemUncached, { cache: 'MISS' })),
    );
  if (want('list'))
    report.scenarios.push(await runScenario(ctx, scenario('list', rq.list, { cache: 'HIT' })));
  if (want('list-uncached'))
    report.scenarios.push(
      await runScenario(ctx, scenario('list-uncached', rq.listUncached, { cache: 'MISS' })),
    );
  if (want('create'))
    report.scenarios.push(await runScenario(ctx, scenario('create', rq.create, { status: 201 })));
  if (want('limiter')) {
    const svcPattern = `${env.redisPrefix('svc')}rl:*`;
    report.scenarios.push(
      await runScenario(
        ctx,
        { ...me, targets: ['service', 'memory', 'nolimit', 'control'] },
        {
          during: {
            server: 'service',
            round: opts.rounds,
            run: async () => {
              // A key lives ~1 ms past each request here: look a few times until one is caught alive.
              const when = 'during limiter (Redis, under load)';
              let state = await limiterKeyState(ctx, when, svcPattern, true);
              for (let i = 0; i < 20 && state.keys === 0; i++) {
                await sleep(5);
                state = await limiterKeyState(ctx, when, svcPattern, true);
              }
              logKeyState(state);
              report.limiterState.push(state);
            },
          },
        },
      ),
    );
    await servers.stop('memory');
    await servers.stop('nolimit');
  }
  if (want('keyspace')) report.keyspace = await runKeyspace(ctx, me, opts.fillKeys, report.limiterState);
  if (want('rate-limited')) report.rateLimited = await runRateLimited(ctx, me, report.limiterState);

  await sleep(5000);
  report.idleRssMB.afterLoad = rssMB(service);
  if (baselineServer && report.idleRssMB.baseline)
    report.idleRssMB.baseline.afterLoad = rssMB(baselineServer);
  log(
    `\nidle RSS after load: ${report.idleRssMB.afterLoad.toFixed(1)} MB` +
      (baselineServer ? ` (baseline ${report.idleRssMB.baseline?.afterLoad?.toFixed(1)} MB)` : ''),
  );
  await servers.stopAll();

  for (const s of allScenarios(report)) report.problems.push(...s.problems);
  report.dataQuality.push(...contentionNotes(allScenarios(report)));
  if (report.halfLoad) {
    const h = report.halfLoad;
    const bad = h.autocannon.errors + h.autocannon.non2xx + h.paced.errors + h.paced.non2xx;
    if (bad > 0) report.problems.push(`half-load: ${bad} errors or non-2xx responses`);
  }
  if (ctx.patience.leftS <= 0)
    report.dataQuality.push(
      `The machine stayed busy with work outside the bench: the ${opts.patienceS} s allowed for waiting and ` +
        'repeating runs ran out, and later runs were measured as they came. Rerun on a quiet machine.',
    );
  if (otlpSink) report.notes.push(otlpSink.summary());
  report.targets = evaluateTargets(report);
  report.finishedAt = new Date().toISOString();

  mkdirSync(opts.outDir, { recursive: true });
  const stamp = startedAt
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const markdown = renderReport(report);
  const jsonPath = join(opts.outDir, `${stamp}-bench.json`);
  const mdPath = join(opts.outDir, `${stamp}-bench.md`);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(mdPath, markdown);
  await cleanup.run();
  process.stdout.write(`${markdown}\n`);
  log(`\nwrote ${mdPath}\nwrote ${jsonPath}`);
  if (report.problems.length > 0) log(`\n!! ${report.problems.length} problem(s): see the top of the report`);
}

/** Re-judges and re-renders a saved report (after a change to the report code), writing <name>.md beside it. */
function rerender(jsonPath: string): void {
  const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchReport;
  report.dataQuality ??= [];
  report.targets = evaluateTargets(report);
  const markdown = renderReport(report);
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(jsonPath.replace(/\.json$/, '.md'), markdown);
  process.stdout.write(`${markdown}\n`);
}

const options = readOptions();
if (options.render) {
  rerender(options.render);
  process.exit(0);
}
const cleanup = new Cleanup();
cleanup.install(options.maxMinutes);
main(options, cleanup).catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await cleanup.run();
  process.exit(1);
});
