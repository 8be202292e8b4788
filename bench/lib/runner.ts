// Owns running one scenario: servers loaded in turn (A B A B ...), each run checked against the service's own view.
import { cpus } from 'node:os';
import type { Cleanup } from './cleanup.ts';
import { type BenchEnv, commandStats } from './environment.ts';
import { sendRequest } from './fixtures.ts';
import { type LoadRequest, type LoadResult, runLoad } from './load.ts';
import { cpuSnapshot, cpuSplit } from './proc.ts';
import { runtimeStats, scrape, sumOf } from './prometheus.ts';
import {
  type RunRecord,
  type ScenarioResult,
  SERVER_LABELS,
  type ServerKind,
  type ServiceProbe,
  type TargetSummary,
} from './results.ts';
import { type ServerProcess, sleep } from './server-process.ts';
import type { Servers } from './servers.ts';
import { max, median, sum } from './stats.ts';

export interface Scenario {
  id: string;
  title: string;
  request: LoadRequest;
  /** Loaded in this order every round; the first is the one compared, 'control' (if present) is the baseline. */
  targets: ServerKind[];
  /** The status every response must have; rate-limited scenarios also accept 429. */
  status: number;
  rateLimited?: boolean;
  /** The X-Cache the service must answer with (checked before loading). */
  cache?: 'HIT' | 'MISS';
}

export interface RunSettings {
  durationS: number;
  warmupS: number;
  rounds: number;
  connections: number;
}

export interface RunnerContext {
  env: BenchEnv;
  servers: Servers;
  cleanup: Cleanup;
  settings: RunSettings;
  /**
   * Seconds left for waiting on a quiet machine and repeating contended runs, over the whole bench.
   * When another suite keeps the machine busy for long, the bench stops waiting and reports the
   * contention instead of running into its hard deadline.
   */
  patience: { leftS: number };
  log(message: string): void;
}

/** A server's first load runs this long, discarded: a fresh process JIT-compiles everything on its first requests. */
const PRIME_S = 3;
const primed = new WeakSet<ServerProcess>();

/** Called mid-run (e.g. to read the limiter's keys while they are live). */
export type DuringRun = (server: ServerProcess) => Promise<void>;

const fmt = (n: number | undefined, d = 0) => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(d));

/** Requests through fetch before loading: right status, right X-Cache, so a wrong setup fails loudly. */
async function precheck(ctx: RunnerContext, s: Scenario, kind: ServerKind, server: ServerProcess) {
  const problems: string[] = [];
  let last: Awaited<ReturnType<typeof sendRequest>> | undefined;
  for (let i = 0; i < 2; i++) last = await sendRequest(server.baseUrl, s.request);
  if (!last) return problems;
  const statusOk = last.status === s.status || (s.rateLimited === true && last.status === 429);
  if (!statusOk)
    problems.push(
      `${s.id}: ${kind} answered ${last.status} before loading (expected ${s.status}): ${last.body.slice(0, 200)}`,
    );
  if (kind !== 'control' && s.cache && last.headers.get('x-cache') !== s.cache)
    problems.push(`${s.id}: ${kind} answered X-Cache ${last.headers.get('x-cache')} (expected ${s.cache})`);
  ctx.log(
    `  check ${kind}: ${last.status}${kind !== 'control' && s.cache ? ` X-Cache ${last.headers.get('x-cache')}` : ''}`,
  );
  return problems;
}

/** The machine counts as quiet when Postgres, Redis and strangers use less than this (% of one core). */
const QUIET_PCT = 25;
/** A run during which strangers used more than this (% of one core) is repeated. */
const CONTENDED_PCT = 30;
const QUIET_WAIT_MAX_S = 30;
const RETRIES = 2;
const CORES = cpus().length;

/**
 * Waits (at most QUIET_WAIT_MAX_S) until nothing outside the bench keeps the cores busy: on a shared
 * 2-core machine another engineer's test suite takes a whole core and halves whatever we measure.
 */
export async function waitForQuiet(ctx: RunnerContext): Promise<number> {
  const t0 = performance.now();
  let told = false;
  for (;;) {
    if (ctx.patience.leftS <= 0) return (performance.now() - t0) / 1000;
    const a = cpuSnapshot(ctx.cleanup.trackedPids);
    await sleep(500);
    const split = cpuSplit(a, cpuSnapshot(ctx.cleanup.trackedPids), CORES);
    const busy = split.externalPct + split.infraPct;
    const waited = (performance.now() - t0) / 1000 - 0.5;
    if (busy < QUIET_PCT) return waited;
    ctx.patience.leftS -= 0.5;
    if (waited > QUIET_WAIT_MAX_S) {
      ctx.log(
        `  machine still busy (${busy.toFixed(0)}% of a core outside the bench) after ${QUIET_WAIT_MAX_S} s: going on`,
      );
      return waited;
    }
    if (!told) ctx.log(`  waiting for a quiet machine: ${busy.toFixed(0)}% of a core busy outside the bench`);
    told = true;
  }
}

/** A scrape whose failure says whether the server died, and what it logged last. */
async function scrapeOf(server: ServerProcess) {
  try {
    return await scrape(server.baseUrl);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : err}\n${server.describe()}`);
  }
}

/** One warm-up (discarded) and one measured autocannon run, with the service's counters around it. */
async function attempt(
  ctx: RunnerContext,
  kind: ServerKind,
  request: LoadRequest,
  during?: DuringRun,
): Promise<{ load: LoadResult; probe?: ServiceProbe }> {
  const server = await ctx.servers.get(kind);
  const { durationS, warmupS, connections } = ctx.settings;
  const base = { baseUrl: server.baseUrl, request, connections, cleanup: ctx.cleanup };
  if (warmupS > 0) await runLoad({ ...base, durationS: warmupS });
  const isService = kind !== 'control';
  let metricsBefore: Awaited<ReturnType<typeof scrape>> = [];
  let redisBefore: Awaited<ReturnType<typeof commandStats>> = {};
  if (isService) {
    await server.logSettled();
    server.truncateLog();
    metricsBefore = await scrapeOf(server);
    redisBefore = await commandStats(ctx.env.redis);
  }
  const loadStart = performance.now();
  const duringDone = during ? sleep((durationS * 1000) / 2).then(() => during(server)) : Promise.resolve();
  const load = await runLoad({ ...base, durationS, server });
  await duringDone;

  let probe: ServiceProbe | undefined;
  if (isService) {
    const metricsAfter = await scrapeOf(server);
    const runtime = runtimeStats(metricsBefore, metricsAfter, (performance.now() - loadStart) / 1000);
    const redisAfter = await commandStats(ctx.env.redis);
    await server.logSettled(); // lines of answered requests (and of the last scrape) land asynchronously
    const logScan = server.scanLog();
    const delta = (name: string, match: Record<string, string> = {}) =>
      sumOf(metricsAfter, name, match) - sumOf(metricsBefore, name, match);
    const limiter: Record<string, number> = {};
    for (const backend of ['redis', 'memory'])
      for (const result of ['allowed', 'limited']) {
        const n = delta('rate_limit_decisions_total', { backend, result });
        if (n > 0) limiter[`${backend}/${result}`] = n;
      }
    const redisDecisions = (limiter['redis/allowed'] ?? 0) + (limiter['redis/limited'] ?? 0);
    const evalsha = {
      calls: (redisAfter.evalsha?.calls ?? 0) - (redisBefore.evalsha?.calls ?? 0),
      usec: (redisAfter.evalsha?.usec ?? 0) - (redisBefore.evalsha?.usec ?? 0),
    };
    // Responses the service counted (requests in flight when autocannon stopped included), plus the
    // two scrapes: logged, but not counted in the HTTP metrics.
    const counted = delta('http_requests_total');
    const served = counted + 2;
    const hits = delta('cache_requests_total', { tier: 'memory', result: 'hit' });
    const misses = delta('cache_requests_total', { tier: 'memory', result: 'miss' });
    probe = {
      logLinesPerReq: logScan.lines / served,
      logBytesPerReq: logScan.bytes / served,
      logProblems: logScan.problems,
      logSamples: logScan.samples,
      countedRequests: counted,
      cacheHitPct: hits + misses > 0 ? (hits / (hits + misses)) * 100 : Number.NaN,
      limiter,
      redisEvalshaCalls: evalsha.calls,
      // Only meaningful when this server's limiter used Redis (the count is server-wide, all clients).
      // Per decision, not per call: a build may decide several requests in one script call (the Node 20 baseline does).
      redisUsPerDecision:
        evalsha.calls > 0 && redisDecisions > 0 ? evalsha.usec / redisDecisions : Number.NaN,
      decisionsPerEvalsha:
        evalsha.calls > 0 && redisDecisions > 0 ? redisDecisions / evalsha.calls : Number.NaN,
      runtime,
    };
    server.truncateLog();
  }
  return { load, ...(probe ? { probe } : {}) };
}

/**
 * A measured run, repeated (at most RETRIES times) when something outside the bench used the CPU
 * meanwhile. Repeated attempts are kept in the record: their errors still count.
 */
export async function measuredRun(
  ctx: RunnerContext,
  kind: ServerKind,
  request: LoadRequest,
  round: number,
  during?: DuringRun,
): Promise<RunRecord> {
  const discarded: LoadResult[] = [];
  for (let n = 1; ; n++) {
    const waitedS = await waitForQuiet(ctx);
    const { load, probe } = await attempt(ctx, kind, request, n === 1 ? during : undefined);
    const contended = load.externalCpuPct > CONTENDED_PCT;
    ctx.log(
      `  round ${round} ${kind.padEnd(8)} ${fmt(load.reqPerSec).padStart(6)} req/s  p50 ${fmt(load.latencyMs.p50)} ms  p99 ${fmt(load.latencyMs.p99)} ms  ` +
        `err ${load.errors}  non-2xx ${load.non2xx}  rss ${fmt(load.rssMaxMB, 1)} MB  cpu ${fmt(load.cpuUsPerReq)} µs/req` +
        (probe ? `  log ${probe.logLinesPerReq.toFixed(2)}/req` : '') +
        (contended ? `  CONTENDED (${load.externalCpuPct.toFixed(0)}% of a core outside the bench)` : ''),
    );
    if (contended && n <= RETRIES && ctx.patience.leftS > 0) {
      ctx.patience.leftS -= ctx.settings.warmupS + ctx.settings.durationS;
      discarded.push(load);
      continue;
    }
    return {
      round,
      server: kind,
      load,
      ...(probe ? { probe } : {}),
      attempts: n,
      contended,
      waitedForQuietS: waitedS,
      discarded,
    };
  }
}

export function summarize(kind: ServerKind, runs: RunRecord[]): TargetSummary {
  const mine = runs.filter((r) => r.server === kind);
  const loads = mine.map((r) => r.load);
  const statusCodes: Record<string, number> = {};
  for (const l of loads)
    for (const [code, n] of Object.entries(l.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  const probes = mine.flatMap((r) => (r.probe ? [r.probe] : []));
  const limiter: Record<string, number> = {};
  for (const p of probes) for (const [k, n] of Object.entries(p.limiter)) limiter[k] = (limiter[k] ?? 0) + n;
  return {
    server: kind,
    label: SERVER_LABELS[kind],
    rounds: mine.length,
    reqPerSec: median(loads.map((l) => l.reqPerSec)),
    p50Ms: median(loads.map((l) => l.latencyMs.p50)),
    p99Ms: median(loads.map((l) => l.latencyMs.p99)),
    p99MaxMs: max(loads.map((l) => l.latencyMs.p99)),
    errors: sum(loads.map((l) => l.errors)),
    non2xx: sum(loads.map((l) => l.non2xx)),
    statusCodes,
    rssMaxMB: max(loads.map((l) => l.rssMaxMB ?? Number.NaN)),
    cpuUsPerReq: median(loads.map((l) => l.cpuUsPerReq ?? Number.NaN)),
    serverCpuPct: median(loads.map((l) => l.serverCpuPct ?? Number.NaN)),
    loadGenCpuPct: median(loads.map((l) => l.loadGenCpuPct)),
    machineBusyPct: median(loads.map((l) => l.machineBusyPct)),
    infraCpuPct: median(loads.map((l) => l.infraCpuPct)),
    externalCpuPct: median(loads.map((l) => l.externalCpuPct)),
    repeatedRuns: sum(mine.map((r) => r.attempts - 1)),
    contendedRuns: mine.filter((r) => r.contended).length,
    discardedErrors: sum(mine.flatMap((r) => r.discarded.map((d) => d.errors))),
    discardedNon2xx: sum(mine.flatMap((r) => r.discarded.map((d) => d.non2xx))),
    ...(probes.length > 0
      ? {
          probe: {
            logLinesPerReq: median(probes.map((p) => p.logLinesPerReq)),
            logBytesPerReq: median(probes.map((p) => p.logBytesPerReq)),
            logProblems: sum(probes.map((p) => p.logProblems)),
            logSamples: probes.flatMap((p) => p.logSamples).slice(0, 5),
            cacheHitPct: median(probes.map((p) => p.cacheHitPct)),
            limiter,
            redisUsPerDecision: median(probes.map((p) => p.redisUsPerDecision)),
            decisionsPerEvalsha: median(probes.map((p) => p.decisionsPerEvalsha)),
            gcPct: median(probes.map((p) => p.runtime.gcPct)),
            gcOver10ms: sum(probes.map((p) => p.runtime.gcOver10ms)),
            loopDelayMaxMs: max(probes.map((p) => p.runtime.loopDelayMaxMs)),
          },
        }
      : {}),
  };
}

/** What a scenario's numbers must look like; anything else is reported loudly. */
function problemsOf(s: Scenario, targets: TargetSummary[]): string[] {
  const out: string[] = [];
  for (const t of targets) {
    const codes = Object.entries(t.statusCodes)
      .map(([c, n]) => `${c}: ${n}`)
      .join(', ');
    if (t.errors > 0) out.push(`${s.id}: ${t.server} had ${t.errors} connection errors/timeouts`);
    if (t.discardedErrors > 0 || (!s.rateLimited && t.discardedNon2xx > 0))
      out.push(
        `${s.id}: ${t.server} had ${t.discardedErrors} errors and ${t.discardedNon2xx} non-2xx in runs repeated for contention`,
      );
    const unexpected = Object.entries(t.statusCodes).filter(
      ([c]) => Number(c) !== s.status && !(s.rateLimited && c === '429'),
    );
    if (unexpected.length > 0) out.push(`${s.id}: ${t.server} answered unexpected statuses (${codes})`);
    if (!s.rateLimited && t.non2xx > 0)
      out.push(`${s.id}: ${t.server} answered ${t.non2xx} non-2xx (${codes})`);
    const p = t.probe;
    if (!p) continue;
    if (p.logProblems > 0)
      out.push(
        `${s.id}: ${t.server} logged ${p.logProblems} warn/error lines, e.g. ${p.logSamples[0] ?? ''}`,
      );
    if (Math.abs(p.logLinesPerReq - 1) > 0.02)
      out.push(
        `${s.id}: ${t.server} wrote ${p.logLinesPerReq.toFixed(3)} log lines per request (expected 1)`,
      );
    if (s.cache === 'HIT' && p.cacheHitPct < 99)
      out.push(`${s.id}: ${t.server} served only ${p.cacheHitPct.toFixed(1)}% from the memory cache tier`);
    const memoryDecisions = (p.limiter['memory/allowed'] ?? 0) + (p.limiter['memory/limited'] ?? 0);
    if (['service', 'limited', 'baseline'].includes(t.server) && memoryDecisions > 0)
      out.push(
        `${s.id}: ${t.server} made ${memoryDecisions} limiter decisions in memory: Redis fell away under load`,
      );
  }
  return out;
}

export async function runScenario(
  ctx: RunnerContext,
  s: Scenario,
  options: { during?: { server: ServerKind; round: number; run: DuringRun } } = {},
): Promise<ScenarioResult> {
  ctx.log(`\n[${s.id}] ${s.title}: ${s.request.method} ${s.request.path}`);
  const problems: string[] = [];
  for (const kind of s.targets) {
    const server = await ctx.servers.get(kind);
    problems.push(...(await precheck(ctx, s, kind, server)));
    if (!primed.has(server)) {
      primed.add(server);
      ctx.log(`  priming ${kind} for ${PRIME_S} s (first load of this process)`);
      await runLoad({
        baseUrl: server.baseUrl,
        request: s.request,
        connections: ctx.settings.connections,
        durationS: PRIME_S,
        cleanup: ctx.cleanup,
      });
    }
  }
  const runs: RunRecord[] = [];
  for (let round = 1; round <= ctx.settings.rounds; round++) {
    for (const kind of s.targets) {
      const during =
        options.during && options.during.server === kind && options.during.round === round
          ? options.during.run
          : undefined;
      runs.push(await measuredRun(ctx, kind, s.request, round, during));
    }
  }
  const targets = s.targets.map((kind) => summarize(kind, runs));
  const first = targets[0] as TargetSummary;
  const control = targets.find((t) => t.server === 'control');
  const roundRatios: number[] = [];
  if (control && first.server !== 'control') {
    for (let round = 1; round <= ctx.settings.rounds; round++) {
      const a = runs.find((r) => r.round === round && r.server === first.server);
      const b = runs.find((r) => r.round === round && r.server === 'control');
      if (a && b) roundRatios.push(a.load.reqPerSec / b.load.reqPerSec);
    }
  }
  problems.push(...problemsOf(s, targets));
  for (const p of problems) ctx.log(`  !! ${p}`);
  return {
    id: s.id,
    title: s.title,
    method: s.request.method,
    path: s.request.path,
    headerNames: Object.keys(s.request.headers ?? {}),
    targets,
    ...(control && first.server !== 'control'
      ? { ratio: first.reqPerSec / control.reqPerSec, cpuRatio: control.cpuUsPerReq / first.cpuUsPerReq }
      : {}),
    roundRatios,
    runs,
    problems,
  };
}
