// `npm run bench:soak -- --minutes 10`: steady moderate load on the hot path; RSS and heap every 10 s; growth per hour.
//
// Growth is the least-squares slope of the samples after a warm-up (the first minute, or the first 20%
// of a longer run), so one GC cycle more or less at the end does not decide the verdict.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cleanup } from './lib/cleanup.ts';
import { createBenchEnv } from './lib/environment.ts';
import { createFixtures } from './lib/fixtures.ts';
import { type LoadResult, runLoad } from './lib/load.ts';
import { num, table, verdict } from './lib/markdown.ts';
import { type CpuSnapshot, cpuSnapshot, cpuSplit } from './lib/proc.ts';
import { scrape, sumOf } from './lib/prometheus.ts';
import { REPO_ROOT, type ServerProcess } from './lib/server-process.ts';
import { Servers } from './lib/servers.ts';
import { linearFit } from './lib/stats.ts';

const HELP = `usage: npm run bench:soak -- [options]

  --minutes <n>         how long to load (default 10; fractions allowed, e.g. 0.5)
  --rate <n>            requests per second offered (default 2000: a moderate share of saturation)
  --connections <n>     autocannon connections (default 100)
  --interval <s>        seconds between samples (default 10)
  --warmup-seconds <s>  samples before this are left out of the slope (default: 60 s or 20% of the run, the longer)
  --out <dir>           where results go (default bench/results)
`;

interface Sample {
  tS: number;
  rssMB: number;
  heapUsedMB: number;
  heapTotalMB: number;
  externalMB: number;
  /** Responses the service counted since the previous sample, per second. */
  reqPerSec: number;
  logLines: number;
  logProblems: number;
  /** Since the previous sample, percent of one core: the service, and what neither the bench nor PG/Redis used. */
  serverCpuPct: number;
  outsideCpuPct: number;
}

const GROWTH_TARGET_MB_PER_HOUR = 5;
const log = (m: string) => process.stderr.write(`${m}\n`);

function readOptions() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      rate: { type: 'string', default: '2000' },
      connections: { type: 'string', default: '100' },
      interval: { type: 'string', default: '10' },
      'warmup-seconds': { type: 'string' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench/results') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const positive = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      process.stderr.write(`--${name} must be a positive number\n${HELP}`);
      process.exit(2);
    }
    return n;
  };
  const minutes = positive('minutes', values.minutes);
  return {
    minutes,
    rate: Math.round(positive('rate', values.rate)),
    connections: Math.round(positive('connections', values.connections)),
    intervalS: positive('interval', values.interval),
    warmupS:
      values['warmup-seconds'] !== undefined
        ? Number(values['warmup-seconds'])
        : // The first minute or 20%, whichever is longer: V8 lets the heap grow for a while before its first
          // full collection, and a slope that starts on that peak says "shrinking" about a healthy process.
          Math.max(60, minutes * 60 * 0.2),
    outDir: values.out,
  };
}

interface Previous {
  counted: number;
  at: number;
  cpu: CpuSnapshot | undefined;
  serverCpuMs: number;
}

async function takeSample(
  service: ServerProcess,
  t0: number,
  previous: Previous,
  ownPids: ReadonlySet<number>,
) {
  const metrics = await scrape(service.baseUrl);
  const now = performance.now();
  const cpu = cpuSnapshot(ownPids);
  const serverCpuMs = service.cpuMs() ?? Number.NaN;
  const split = previous.cpu ? cpuSplit(previous.cpu, cpu, os.cpus().length) : undefined;
  const counted = sumOf(metrics, 'http_requests_total');
  // The log is read and emptied at every sample: it proves one line per request and keeps the file small.
  await service.logSettled();
  const logScan = service.scanLog();
  service.truncateLog();
  const sample: Sample = {
    tS: (now - t0) / 1000,
    rssMB: (service.rss() ?? Number.NaN) / 2 ** 20,
    heapUsedMB: sumOf(metrics, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotalMB: sumOf(metrics, 'nodejs_heap_size_total_bytes') / 2 ** 20,
    externalMB: sumOf(metrics, 'nodejs_external_memory_bytes') / 2 ** 20,
    reqPerSec: previous.at > 0 ? (counted - previous.counted) / ((now - previous.at) / 1000) : 0,
    logLines: logScan.lines,
    logProblems: logScan.problems,
    serverCpuPct: previous.at > 0 ? ((serverCpuMs - previous.serverCpuMs) / (now - previous.at)) * 100 : 0,
    outsideCpuPct: split?.externalPct ?? 0,
  };
  previous.counted = counted;
  previous.at = now;
  previous.cpu = cpu;
  previous.serverCpuMs = serverCpuMs;
  return { sample, problemSamples: logScan.samples };
}

async function main(opts: ReturnType<typeof readOptions>, cleanup: Cleanup) {
  const startedAt = new Date();
  const durationS = opts.minutes * 60;
  log(`soak: ${opts.minutes} min at ${opts.rate} req/s over ${opts.connections} connections on the hot path`);
  const env = await createBenchEnv(cleanup, { jwtExpiresIn: `${Math.ceil(opts.minutes) + 30}m` });
  const servers = new Servers(env, cleanup);
  const service = await servers.get('service');
  const fx = await createFixtures(service.baseUrl, env);
  const request = fx.requests.itemJwt;

  const samples: Sample[] = [];
  const problems: string[] = [];
  const previous: Previous = { counted: 0, at: 0, cpu: undefined, serverCpuMs: 0 };
  const t0 = performance.now();
  const record = async () => {
    const { sample, problemSamples } = await takeSample(service, t0, previous, cleanup.trackedPids);
    samples.push(sample);
    if (sample.logProblems > 0) problems.push(...problemSamples.slice(0, 2));
    log(
      `  t=${sample.tS.toFixed(0).padStart(4)} s  rss ${sample.rssMB.toFixed(1)} MB  heap ${sample.heapUsedMB.toFixed(1)}/${sample.heapTotalMB.toFixed(1)} MB  ` +
        `${sample.reqPerSec.toFixed(0)} req/s  cpu ${sample.serverCpuPct.toFixed(0)}%  outside ${sample.outsideCpuPct.toFixed(0)}%  ` +
        `log ${sample.logLines} lines, ${sample.logProblems} warn+`,
    );
  };
  await record(); // t = 0: idle, before any load

  // Samples are taken between awaits on the timer, never overlapping: a slow scrape only delays the next.
  let loading = true;
  const sampling = (async () => {
    while (loading) {
      await new Promise((r) => setTimeout(r, opts.intervalS * 1000));
      if (loading) await record();
    }
  })();
  const load: LoadResult = await runLoad({
    baseUrl: service.baseUrl,
    request,
    connections: opts.connections,
    durationS,
    overallRate: opts.rate,
    server: service,
    cleanup,
  });
  loading = false;
  await sampling;
  await record();
  await servers.stopAll();

  const fitted = samples.filter((s) => s.tS >= opts.warmupS && s.tS <= durationS + opts.intervalS);
  const hours = fitted.map((s) => s.tS / 3600);
  const rss = linearFit(
    hours,
    fitted.map((s) => s.rssMB),
  );
  const heap = linearFit(
    hours,
    fitted.map((s) => s.heapUsedMB),
  );
  // Met only when even the upper end of the interval is under the target; missed only when even the
  // lower end is over it; anything between says the run was too short or too noisy to tell.
  const met =
    rss.ciHigh < GROWTH_TARGET_MB_PER_HOUR
      ? true
      : rss.ciLow >= GROWTH_TARGET_MB_PER_HOUR
        ? false
        : undefined;
  const growthVerdict =
    met === undefined ? 'inconclusive (interval spans the target: run longer)' : verdict(met);
  const totalLog = samples.reduce((n, s) => n + s.logLines, 0);
  const counted = previous.counted;
  if (load.errors > 0 || load.non2xx > 0)
    problems.unshift(`${load.errors} errors and ${load.non2xx} non-2xx responses during the soak`);

  const o: string[] = [];
  o.push(`# Soak ${startedAt.toISOString()}`);
  o.push('');
  o.push(
    `Hot path (GET /v1/items/:id with a JWT, cache hit, Redis limiter) at ${opts.rate} req/s offered over ` +
      `${opts.connections} connections for ${opts.minutes} min; samples every ${opts.intervalS} s; slope over the ` +
      `${fitted.length} samples after ${opts.warmupS.toFixed(0)} s. ${os.cpus().length} cores, Node ${process.version}.`,
  );
  o.push('');
  if (problems.length > 0) {
    o.push('## ⚠️ PROBLEMS');
    o.push('');
    for (const p of problems) o.push(`- **${p.slice(0, 400)}**`);
    o.push('');
  }
  o.push(
    table(
      ['measure', 'value', 'verdict'],
      [
        [
          'RSS growth per hour (least squares)',
          `${num(rss.slope, 1)} MB/h, 95% CI ${num(rss.ciLow, 1)} to ${num(rss.ciHigh, 1)} (r² ${num(rss.r2, 2)})`,
          growthVerdict,
        ],
        [
          'heap used growth per hour',
          `${num(heap.slope, 1)} MB/h, 95% CI ${num(heap.ciLow, 1)} to ${num(heap.ciHigh, 1)} (r² ${num(heap.r2, 2)})`,
          '',
        ],
        [
          'RSS first / last sample after warm-up',
          `${num(fitted[0]?.rssMB, 1)} / ${num(fitted.at(-1)?.rssMB, 1)} MB`,
          '',
        ],
        ['RSS max under load', `${num(load.rssMaxMB, 1)} MB`, ''],
        ['responses (autocannon) / counted by the service', `${num(load.requests)} / ${num(counted)}`, ''],
        ['achieved req/s', num(load.reqPerSec), ''],
        ['p50 / p99 (autocannon, whole ms)', `${load.latencyMs.p50} / ${load.latencyMs.p99} ms`, ''],
        ['errors / non-2xx', `${load.errors} / ${load.non2xx}`, ''],
        ['access log lines per counted response', num(totalLog / Math.max(1, counted), 3), ''],
        ['server CPU per request', `${num(load.cpuUsPerReq)} µs`, ''],
      ],
    ),
  );
  o.push('');
  if (opts.minutes < 10)
    o.push(
      `A ${opts.minutes}-minute run is a smoke check: a slope extrapolated to an hour from a few minutes is ` +
        'dominated by GC timing. Judge growth on runs of 10 minutes or more.',
    );
  o.push('');
  o.push('## Samples');
  o.push('');
  o.push(
    table(
      [
        't s',
        'RSS MB',
        'heap used MB',
        'heap total MB',
        'V8 external MB',
        'req/s',
        'server CPU %',
        'outside CPU %',
        'log lines',
        'warn+ lines',
      ],
      samples.map((s) => [
        num(s.tS),
        num(s.rssMB, 1),
        num(s.heapUsedMB, 1),
        num(s.heapTotalMB, 1),
        num(s.externalMB, 1),
        num(s.reqPerSec),
        num(s.serverCpuPct),
        num(s.outsideCpuPct),
        s.logLines,
        s.logProblems,
      ]),
    ),
  );
  o.push('');
  const markdown = o.join('\n');

  mkdirSync(opts.outDir, { recursive: true });
  const stamp = startedAt
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: opts,
    growthMBPerHour: { rss, heapUsed: heap },
    target: { growthMBPerHour: GROWTH_TARGET_MB_PER_HOUR, met: met ?? null },
    load,
    countedResponses: counted,
    logLinesPerResponse: totalLog / Math.max(1, counted),
    samples,
    problems,
  };
  writeFileSync(join(opts.outDir, `${stamp}-soak.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(opts.outDir, `${stamp}-soak.md`), markdown);
  await cleanup.run();
  process.stdout.write(`${markdown}\n`);
  log(`\nwrote ${join(opts.outDir, `${stamp}-soak.md`)} and .json`);
}

const options = readOptions();
const cleanup = new Cleanup();
cleanup.install(options.minutes + 10);
main(options, cleanup).catch(async (err: unknown) => {
  process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await cleanup.run();
  process.exit(1);
});
