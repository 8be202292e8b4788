// Owns issue 8's targets: each one judged met or missed from a bench report, with the number it rests on.
import type { BenchReport, TargetSummary, TargetVerdict } from './results.ts';
import { max, median } from './stats.ts';

const f = (n: number | undefined, d = 0) =>
  n === undefined || !Number.isFinite(n)
    ? '—'
    : n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

/**
 * Per-request cost counts as independent of key count when 1M keys move Redis's own time per limiter
 * call by less than this. Only Redis can depend on its key count: the service sends the same command
 * and gets the same reply either way, so its CPU per request and its ratio to the control are shown as
 * context, not judged (on this shared 2-core machine they drift ±15% between two phases by themselves).
 */
export const KEYSPACE_REDIS_US_TOLERANCE = 0.25;

export function evaluateTargets(r: BenchReport): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const find = (id: string) => r.scenarios.find((s) => s.id === id);
  const target = (id: string, kind = 'service'): TargetSummary | undefined =>
    find(id)?.targets.find((t) => t.server === kind);

  const hot = find('item-jwt');
  out.push({
    target: 'Hot path >= 0.35x the bare Fastify control (req/s, same run)',
    measured: hot?.ratio
      ? `${f(hot.ratio, 3)}x (${f(target('item-jwt')?.reqPerSec)} vs ${f(target('item-jwt', 'control')?.reqPerSec)} req/s; ` +
        `rounds ${hot.roundRatios.map((x) => f(x, 3)).join(', ')}; CPU-per-request ratio ${f(hot.cpuRatio, 3)}x: ` +
        `${f(target('item-jwt')?.cpuUsPerReq)} vs ${f(target('item-jwt', 'control')?.cpuUsPerReq)} µs)`
      : 'not run',
    met: hot?.ratio === undefined ? undefined : hot.ratio >= 0.35,
  });

  const h = r.halfLoad;
  out.push({
    target:
      'p99 <= 5 ms at 50% of the hot path saturated throughput, 100 connections (autocannon overallRate)',
    measured: h
      ? `p99 ${f(h.autocannon.p99Ms)} ms (median of rounds, worst ${f(h.autocannon.p99MaxMs)}) at ${f(h.rate)} req/s offered`
      : 'not run',
    met: h ? h.autocannon.p99Ms <= 5 : undefined,
  });
  out.push({
    target: 'the same, evenly paced open-loop arrivals (see notes: overallRate is bursty)',
    measured: h
      ? `p99 ${f(h.paced.p99Ms, 2)} ms from due time (worst round ${f(h.paced.p99MaxMs, 2)}; from send ${f(h.paced.p99FromSendMs, 2)}) at ${f(h.paced.achievedPerSec)} req/s`
      : 'not run',
    met: h ? h.paced.p99Ms <= 5 : undefined,
  });

  let errors = 0;
  let non2xx = 0;
  const all = [...r.scenarios, ...(r.keyspace ? [r.keyspace.few, r.keyspace.many] : [])];
  for (const s of all)
    for (const t of s.targets) {
      errors += t.errors;
      non2xx += t.non2xx;
    }
  if (h) {
    errors += h.autocannon.errors + h.paced.errors;
    non2xx += h.autocannon.non2xx + h.paced.non2xx;
  }
  out.push({
    target: 'Zero errors and zero non-2xx outside the rate-limit scenario',
    measured: `${errors} errors, ${non2xx} non-2xx over ${all.length} scenarios${h ? ' + half-load' : ''}`,
    met: all.length > 0 ? errors === 0 && non2xx === 0 : undefined,
  });

  const st = r.startup;
  const wall = st ? median(st.wallMs) : undefined;
  const own = st ? median(st.startupMs) : undefined;
  out.push({
    target: 'Start to ready <= 300 ms (compiled build, real Postgres and Redis)',
    measured: st
      ? `median ${f(wall)} ms spawn to first /ready 200 (${st.wallMs.map((x) => f(x)).join(', ')}); ` +
        `server's startupMs median ${f(own)} (${st.startupMs.map((x) => f(x)).join(', ')})`
      : 'not run',
    met: wall === undefined ? undefined : wall <= 300,
  });

  out.push({
    target: 'Idle RSS <= 80 MB',
    measured: r.idleRssMB
      ? `${f(r.idleRssMB.afterStart, 1)} MB after start (${f(r.idleRssMB.afterLoad, 1)} MB idle after the load)`
      : 'not run',
    met: r.idleRssMB ? r.idleRssMB.afterStart <= 80 : undefined,
  });

  const hotRss = target('item-jwt')?.rssMaxMB;
  const anyRss = max(
    all.flatMap((s) => s.targets.filter((t) => t.server === 'service').map((t) => t.rssMaxMB)),
  );
  out.push({
    target: 'RSS <= 120 MB under load at 100 connections',
    measured: `hot path max ${f(hotRss, 1)} MB; max over every service scenario ${f(anyRss, 1)} MB`,
    met: hotRss === undefined ? undefined : hotRss <= 120 && !(anyRss > 120),
  });

  out.push({
    target: 'Soak growth < 5 MB per hour',
    measured: 'measured by npm run bench:soak (see its report)',
    met: undefined,
  });

  const states = r.limiterState;
  const usage = max(states.map((s) => s.sampleMemoryUsage ?? Number.NaN));
  const noTtl = states.reduce((n, s) => n + s.withoutTtl, 0);
  const keys = states.reduce((n, s) => n + s.keys, 0);
  const perKey = r.keyspace?.bytesPerFillerKey;
  out.push({
    target: 'Rate-limit state <= 160 bytes per active key, every key with a TTL',
    measured:
      states.length === 0
        ? 'not run'
        : `MEMORY USAGE ${f(usage)} B per limiter key; ${perKey !== undefined ? `used_memory grew ${f(perKey, 1)} B per key over ${f(r.keyspace?.fillKeys)} keys (expiry entry included); ` : ''}` +
          `${noTtl} of ${keys} limiter keys seen without a TTL`,
    met:
      states.length === 0 || !Number.isFinite(usage)
        ? undefined
        : usage <= 160 && noTtl === 0 && (perKey === undefined || perKey <= 160),
  });

  const k = r.keyspace;
  if (k) {
    const few = k.few.targets.find((t) => t.server === 'service');
    const many = k.many.targets.find((t) => t.server === 'service');
    const ratioChange = k.few.ratio && k.many.ratio ? k.many.ratio / k.few.ratio - 1 : Number.NaN;
    const usFew = few?.probe?.redisUsPerDecision ?? Number.NaN;
    const usMany = many?.probe?.redisUsPerDecision ?? Number.NaN;
    const usChange = usMany / usFew - 1;
    const cpuChange = (many?.cpuUsPerReq ?? Number.NaN) / (few?.cpuUsPerReq ?? Number.NaN) - 1;
    out.push({
      target: 'Per-request cost independent of the number of keys (1 key vs 1M keys)',
      measured:
        `ratio to control ${f(k.few.ratio, 3)} -> ${f(k.many.ratio, 3)} (${f(ratioChange * 100, 1)}%); ` +
        `service CPU ${f(few?.cpuUsPerReq)} -> ${f(many?.cpuUsPerReq)} µs/req (${f(cpuChange * 100, 1)}%); ` +
        `Redis ${f(usFew, 2)} -> ${f(usMany, 2)} µs per limiter decision (${f(usChange * 100, 1)}%)` +
        ` [met when Redis µs/decision moves < ${KEYSPACE_REDIS_US_TOLERANCE * 100}%]`,
      met: Number.isFinite(usChange) ? Math.abs(usChange) < KEYSPACE_REDIS_US_TOLERANCE : undefined,
    });
  } else {
    out.push({
      target: 'Per-request cost independent of the number of keys',
      measured: 'not run',
      met: undefined,
    });
  }
  return out;
}
