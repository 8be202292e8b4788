// Owns the shape of bench/results/<date>-bench.json (also what the markdown report is rendered from).
import type { LoadResult } from './load.ts';
import type { PacedResult } from './paced-load.ts';
import type { RuntimeStats } from './prometheus.ts';

/** Which server a run loaded. */
export type ServerKind = 'service' | 'memory' | 'nolimit' | 'limited' | 'baseline' | 'control';

export const SERVER_LABELS: Record<ServerKind, string> = {
  service: 'service (Redis limiter)',
  memory: 'service, limiter on memory (no REDIS_URL)',
  nolimit: 'service, RATE_LIMIT_ENABLED=false',
  limited: 'service, 100 req/min limit',
  baseline: 'the Node 20 build of --baseline <ref>',
  control: 'bare Fastify control',
};

/** What the bench read from the service itself around one run (not available for the control). */
export interface ServiceProbe {
  /** Access log lines written during the run, per response (1.00 is the contract). */
  logLinesPerReq: number;
  logBytesPerReq: number;
  /** warn/error/fatal log lines during the run, with a few samples. */
  logProblems: number;
  logSamples: string[];
  /** http_requests_total delta: what the service counted. */
  countedRequests: number;
  /** Memory-tier cache hits as a share of responses (cached scenarios). */
  cacheHitPct: number;
  /** rate_limit_decisions_total deltas, "backend/result" -> count. */
  limiter: Record<string, number>;
  /** Redis EVALSHA (the limiter's Lua) calls during the run (all clients), server-side µs per limiter
   * decision, and decisions per call (1 when each decision is its own call; more when a build batches them). */
  redisEvalshaCalls: number;
  redisUsPerDecision: number;
  decisionsPerEvalsha: number;
  runtime: RuntimeStats;
}

export interface RunRecord {
  round: number;
  server: ServerKind;
  load: LoadResult;
  probe?: ServiceProbe;
  /** 1 unless earlier attempts were repeated because something outside the bench used the CPU. */
  attempts: number;
  /** Still contended after the retries: read this run with care. */
  contended: boolean;
  waitedForQuietS: number;
  /** The repeated attempts (their errors and non-2xx are still reported). */
  discarded: LoadResult[];
}

export interface TargetSummary {
  server: ServerKind;
  label: string;
  rounds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p99MaxMs: number;
  errors: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  rssMaxMB: number;
  cpuUsPerReq: number;
  serverCpuPct: number;
  loadGenCpuPct: number;
  machineBusyPct: number;
  infraCpuPct: number;
  externalCpuPct: number;
  /** Runs repeated because of outside CPU use, and runs that stayed contended. */
  repeatedRuns: number;
  contendedRuns: number;
  /** Errors and non-2xx of repeated attempts (never hidden by a retry). */
  discardedErrors: number;
  discardedNon2xx: number;
  probe?: {
    logLinesPerReq: number;
    logBytesPerReq: number;
    logProblems: number;
    logSamples: string[];
    cacheHitPct: number;
    limiter: Record<string, number>;
    redisUsPerDecision: number;
    decisionsPerEvalsha: number;
    gcPct: number;
    gcOver10ms: number;
    loopDelayMaxMs: number;
  };
}

export interface ScenarioResult {
  id: string;
  title: string;
  method: string;
  path: string;
  /** Header names sent (values hold credentials and are never written). */
  headerNames: string[];
  targets: TargetSummary[];
  /** Median req/s of the first target / median req/s of the control. */
  ratio?: number;
  /** Per round: first target / control of the same round. */
  roundRatios: number[];
  /** Control CPU µs per request / first target's: the throughput ratio if both were CPU bound on one core. */
  cpuRatio?: number;
  runs: RunRecord[];
  problems: string[];
}

export interface HalfLoadResult {
  saturatedReqPerSec: number;
  rate: number;
  connections: number;
  autocannon: {
    p50Ms: number;
    p99Ms: number;
    p99MaxMs: number;
    reqPerSec: number;
    errors: number;
    non2xx: number;
  };
  paced: {
    p50Ms: number;
    p99Ms: number;
    p99MaxMs: number;
    p99FromSendMs: number;
    achievedPerSec: number;
    errors: number;
    non2xx: number;
  };
  /** The same paced load against the control: the floor this machine and generator add by themselves. */
  controlPaced: { p50Ms: number; p99Ms: number; achievedPerSec: number };
  runs: {
    round: number;
    autocannon: LoadResult;
    paced: PacedResult;
    /** The service's GC and event-loop delay during the paced run. */
    pacedRuntime: RuntimeStats;
    controlPaced: PacedResult;
  }[];
}

export interface LimiterKeyState {
  when: string;
  pattern: string;
  keys: number;
  withTtl: number;
  withoutTtl: number;
  /** Gone between SCAN and PTTL (expired): not a violation. */
  expired: number;
  sampleKey?: string;
  sampleMemoryUsage?: number;
  samplePttlMs?: number;
}

export interface KeyspaceResult {
  fillKeys: number;
  bytesPerFillerKey: number;
  fillerMemoryUsage: number | undefined;
  fillSeconds: number;
  few: ScenarioResult;
  many: ScenarioResult;
}

export interface RateLimitedResult {
  scenario: ScenarioResult;
  /** 2xx over every request of the scenario (warm-ups included) vs what the bucket allows in that time. */
  allowed: number;
  expectedAllowedMax: number;
  limited: number;
  other: number;
  elapsedS: number;
}

/** Production starts of one server (NODE_ENV=production, real Postgres and Redis, docs off), each stopped again. */
export interface StartSamples {
  /** Main-thread CPU (/proc/<pid>/task/<pid>/schedstat) when /ready first answered 200, ms. */
  mainThreadCpuMs: number[];
  /** spawn() to the first 200 from /ready, ms. */
  wallMs: number[];
  /** The server's own `startupMs` (process start to listening, module loading included). */
  startupMs: number[];
}

export interface StartupResult extends StartSamples {
  /** NODE_COMPILE_CACHE of this tree's servers, as the ready line reported it, and its files after the warm-up start. */
  compileCacheDir?: string;
  compileCacheFiles?: number;
  withMigrateOnStart?: { wallMs: number; mainThreadCpuMs?: number; startupMs: number | undefined };
  /** The same starts of the --baseline build, alternated with these; `compileCache` from its ready lines. */
  baseline?: StartSamples & { compileCache: string[] };
}

export interface TargetVerdict {
  target: string;
  measured: string;
  met: boolean | undefined;
  /** 'target': issue 14's targets; 'check': issue 8's other checks, still judged. */
  kind?: 'target' | 'check';
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  machine: {
    cpus: number;
    cpuModel: string;
    node: string;
    /** NODE_OPTIONS this tree's service ran with (the image's). */
    serviceNodeOptions?: string;
    /** --service-env: variables given to this tree's service. */
    serviceEnv?: Record<string, string>;
    loadAvgAtStart: number[];
    memoryGB: number;
  };
  /** srcDirty: src/ had uncommitted changes when the run copied it (snapshotAt). */
  git: { commit: string; srcDirty: boolean; snapshotAt?: string };
  /** The --baseline build that ran beside this tree's service, if any. */
  baseline?: { ref: string; commit: string; node: string; prepareSeconds: number };
  options: Record<string, unknown>;
  startup?: StartupResult;
  idleRssMB?: {
    afterStart: number;
    afterLoad?: number;
    baseline?: { afterStart: number; afterLoad?: number };
  };
  scenarios: ScenarioResult[];
  halfLoad?: HalfLoadResult;
  limiterState: LimiterKeyState[];
  keyspace?: KeyspaceResult;
  rateLimited?: RateLimitedResult;
  targets: TargetVerdict[];
  problems: string[];
  /** Contention and other reasons to distrust some numbers (shown at the top). */
  dataQuality: string[];
  notes: string[];
}
