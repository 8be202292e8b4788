// Owns one autocannon run against one server, with the server's RSS and CPU read from /proc meanwhile.
import { cpus } from 'node:os';
import autocannon from 'autocannon';
import type { Cleanup } from './cleanup.ts';
import { cpuSnapshot, cpuSplit } from './proc.ts';
import type { ServerProcess } from './server-process.ts';

export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadResult {
  /** Responses received (any status). */
  requests: number;
  durationS: number;
  reqPerSec: number;
  /** autocannon's histogram: whole milliseconds, 2xx responses only. */
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Connection errors, timeouts included. */
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** Highest VmRSS seen while loading, sampled every RSS_SAMPLE_MS. */
  rssMaxMB: number | undefined;
  /** Server CPU (all threads) during the run divided by responses: what one request costs the server. */
  cpuUsPerReq: number | undefined;
  /** Server CPU during the run, percent of one core: near 100 means the server was the bottleneck. */
  serverCpuPct: number | undefined;
  /** This process (autocannon) CPU, percent of one core: near 100 means the load generator saturated. */
  loadGenCpuPct: number;
  /** All cores busy, percent of one core (max 100 x cores). */
  machineBusyPct: number;
  /** Postgres and Redis processes, percent of one core. */
  infraCpuPct: number;
  /** Neither the bench nor Postgres/Redis (another test suite, a build): well above 0 means contended. */
  externalCpuPct: number;
}

export interface LoadOptions {
  baseUrl: string;
  request: LoadRequest;
  connections: number;
  durationS: number;
  overallRate?: number;
  /** The server whose RSS and CPU are read (its pid), when it is a child of ours. */
  server?: ServerProcess;
  cleanup?: Cleanup;
}

const RSS_SAMPLE_MS = 250;
const CORES = cpus().length;

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const instance = autocannon({
    url: o.baseUrl + o.request.path,
    method: o.request.method,
    connections: o.connections,
    duration: o.durationS,
    ...(o.request.headers ? { headers: o.request.headers } : {}),
    ...(o.request.body !== undefined ? { body: o.request.body } : {}),
    ...(o.overallRate ? { overallRate: o.overallRate } : {}),
  });
  if (o.cleanup) o.cleanup.onInterrupt = () => instance.stop();

  let rssMax = 0;
  const sample = () => {
    const rss = o.server?.rss();
    if (rss !== undefined && rss > rssMax) rssMax = rss;
  };
  const sampler = o.server ? setInterval(sample, RSS_SAMPLE_MS) : undefined;
  const ownPids = o.cleanup?.trackedPids ?? new Set<number>();
  const cpu0 = o.server?.cpuMs();
  const snap0 = cpuSnapshot(ownPids);

  const result = await instance;

  const snap1 = cpuSnapshot(ownPids);
  const cpu1 = o.server?.cpuMs();
  const wallMs = snap1.at - snap0.at;
  const split = cpuSplit(snap0, snap1, CORES);
  if (sampler) clearInterval(sampler);
  sample();
  if (o.cleanup) o.cleanup.onInterrupt = undefined;

  const requests = result.requests.total;
  const serverCpu = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined;
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = count;
  return {
    requests,
    durationS: result.duration,
    reqPerSec: requests / result.duration,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      p999: result.latency.p99_9,
      max: result.latency.max,
      mean: result.latency.mean,
    },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
    rssMaxMB: o.server ? rssMax / 2 ** 20 : undefined,
    cpuUsPerReq: serverCpu !== undefined && requests > 0 ? (serverCpu * 1000) / requests : undefined,
    serverCpuPct: serverCpu !== undefined ? (serverCpu / wallMs) * 100 : undefined,
    loadGenCpuPct: split.selfPct,
    machineBusyPct: split.machinePct,
    infraCpuPct: split.infraPct,
    externalCpuPct: split.externalPct,
  };
}
