// Owns the markdown rendering of a bench report (bench/results/<date>-bench.md, also printed).
import { num, table, verdict } from './markdown.ts';
import type { BenchReport, ScenarioResult, TargetSummary } from './results.ts';
import { median } from './stats.ts';

const ratioCell = (s: ScenarioResult, t: TargetSummary, control: TargetSummary | undefined) => {
  if (!control || t.server === 'control') return '—';
  const rounds =
    s.targets[0] === t && s.roundRatios.length > 0
      ? ` (${num(Math.min(...s.roundRatios), 2)}–${num(Math.max(...s.roundRatios), 2)})`
      : '';
  return `${num(t.reqPerSec / control.reqPerSec, 3)}${rounds}`;
};

function scenarioRows(scenarios: ScenarioResult[]): (string | number)[][] {
  const rows: (string | number)[][] = [];
  for (const s of scenarios) {
    const control = s.targets.find((t) => t.server === 'control');
    for (const t of s.targets) {
      rows.push([
        t === s.targets[0] ? `**${s.id}**` : '',
        t.server,
        num(t.reqPerSec),
        num(t.p50Ms),
        num(t.p99Ms),
        t.errors,
        t.non2xx,
        t.server === 'control' ? '—' : num(t.rssMaxMB, 1),
        num(t.cpuUsPerReq),
        ratioCell(s, t, control),
        control && t.server !== 'control' ? num(control.cpuUsPerReq / t.cpuUsPerReq, 3) : '—',
      ]);
    }
  }
  return rows;
}

const SCENARIO_HEADER = [
  'scenario',
  'server',
  'req/s',
  'p50 ms',
  'p99 ms',
  'errors',
  'non-2xx',
  'RSS max MB',
  'CPU µs/req',
  'ratio to control (rounds)',
  'CPU ratio',
];

function verificationRows(scenarios: ScenarioResult[]): (string | number)[][] {
  const rows: (string | number)[][] = [];
  for (const s of scenarios)
    for (const t of s.targets) {
      const p = t.probe;
      rows.push([
        s.id,
        t.server,
        p ? num(p.logLinesPerReq, 2) : '—',
        p ? num(p.logBytesPerReq) : '—',
        p ? p.logProblems : '—',
        p && Number.isFinite(p.cacheHitPct) ? num(p.cacheHitPct, 1) : '—',
        p
          ? Object.entries(p.limiter)
              .map(([k, n]) => `${k} ${num(n)}`)
              .join(', ') || 'none'
          : '—',
        p ? num(p.redisUsPerDecision, 2) : '—',
        p ? num(p.decisionsPerEvalsha, 1) : '—',
        p ? num(p.gcPct, 1) : '—',
        p ? p.gcOver10ms : '—',
        p ? num(p.loopDelayMaxMs, 1) : '—',
        num(t.serverCpuPct),
        num(t.loadGenCpuPct),
        num(t.infraCpuPct),
        num(t.externalCpuPct),
        `${t.repeatedRuns}${t.contendedRuns > 0 ? ` (${t.contendedRuns} contended)` : ''}`,
        Object.entries(t.statusCodes)
          .map(([c, n]) => `${c}: ${num(n)}`)
          .join(', '),
      ]);
    }
  return rows;
}

export function renderReport(r: BenchReport): string {
  const o: string[] = [];
  o.push(`# Benchmark ${r.startedAt}`);
  o.push('');
  const b = r.baseline;
  o.push(
    `Commit ${r.git.commit}${r.git.srcDirty ? ' (src/ has uncommitted changes)' : ''}, src/ copied ${r.git.snapshotAt ?? '?'}; ` +
      (b
        ? `baseline ${b.ref} (${b.commit}) built and run on Node ${b.node.replace(/^v/, '')} (prepared in ${b.prepareSeconds} s); `
        : '') +
      `${r.machine.cpus} × ${r.machine.cpuModel}, ` +
      `${r.machine.memoryGB} GB, Node ${r.machine.node}${r.machine.serviceNodeOptions ? ` (service: NODE_OPTIONS=${r.machine.serviceNodeOptions}, as the image)` : ''}${
        r.machine.serviceEnv
          ? ` (service env: ${Object.entries(r.machine.serviceEnv)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')})`
          : ''
      }; load average at start ${r.machine.loadAvgAtStart.join(' ')}. ` +
      `Runs: ${r.options.rounds} rounds × (${r.options.warmupS} s warm-up + ${r.options.durationS} s measured), ` +
      `${r.options.connections} connections, servers alternated within each round. Medians over rounds; ` +
      `errors and non-2xx are sums; RSS is the highest sample.`,
  );
  o.push('');
  if (r.problems.length > 0) {
    o.push('## ⚠️ PROBLEMS');
    o.push('');
    for (const p of r.problems) o.push(`- **${p}**`);
    o.push('');
  }

  if (r.dataQuality.length > 0) {
    o.push('## Data quality');
    o.push('');
    for (const d of r.dataQuality) o.push(`- ${d}`);
    o.push('');
  }

  const verdictTable = (rows: typeof r.targets) =>
    table(
      ['target', 'measured', 'verdict'],
      rows.map((t) => [t.target, t.measured, verdict(t.met)]),
    );
  o.push('## Targets (issue 14)');
  o.push('');
  o.push(verdictTable(r.targets.filter((t) => t.kind !== 'check')));
  o.push('');
  const checks = r.targets.filter((t) => t.kind === 'check');
  if (checks.length > 0) {
    o.push('### Other checks (issue 8)');
    o.push('');
    o.push(verdictTable(checks));
    o.push('');
  }

  const comparison = baselineComparison(r);
  if (comparison) o.push(comparison);

  if (r.scenarios.length > 0) {
    o.push(
      `## Scenarios: service${r.baseline ? ' (and the Node 20 baseline on the hot path)' : ''} vs bare Fastify`,
    );
    o.push('');
    o.push(table(SCENARIO_HEADER, scenarioRows(r.scenarios)));
    o.push('');
    o.push(
      '*ratio* = service req/s ÷ control req/s (medians; range over the per-round ratios). *CPU µs/req* = the ' +
        "server process's CPU time (all threads, from /proc) during the run ÷ responses. *CPU ratio* = control " +
        'µs/req ÷ service µs/req: the throughput ratio both would have if each had a core to itself and the ' +
        'load generator were free.',
    );
    o.push('');
    o.push('### What the service did during each run');
    o.push('');
    o.push(
      table(
        [
          'scenario',
          'server',
          'log lines/req',
          'log bytes/req',
          'warn+ lines',
          'cache hit %',
          'limiter decisions',
          'Redis µs/limiter decision',
          'decisions per script call',
          'GC % of time',
          'GC pauses > 10 ms',
          'loop delay max ms',
          'server CPU %',
          'load-gen CPU %',
          'PG+Redis CPU %',
          'outside CPU %',
          'repeated runs',
          'status codes',
        ],
        verificationRows([
          ...r.scenarios,
          ...(r.keyspace ? [r.keyspace.few, r.keyspace.many] : []),
          ...(r.rateLimited ? [r.rateLimited.scenario] : []),
        ]),
      ),
    );
    o.push('');
    o.push(
      'From the service itself, between runs: access-log lines and warn/error lines in its log file, ' +
        '`cache_requests_total` and `rate_limit_decisions_total` deltas from /metrics, and EVALSHA time from Redis ' +
        '`INFO commandstats` (server-side, per limiter decision; *decisions per script call* is 1 when every decision ' +
        "is its own call, more when a build batches them; shown when this server's limiter used Redis). CPU percentages are of " +
        `one core (the machine has ${r.machine.cpus}); *outside* is what neither the bench nor Postgres/Redis used ` +
        '(another test suite, a build). A run during which that exceeded 30% was repeated (up to twice), after ' +
        'waiting for a quiet machine.',
    );
    o.push('');
  }

  const h = r.halfLoad;
  if (h) {
    o.push('## Hot path at 50% of its saturated throughput');
    o.push('');
    o.push(
      `Saturated: ${num(h.saturatedReqPerSec)} req/s (item-jwt median); offered ${num(h.rate)} req/s over ${h.connections} connections.`,
    );
    o.push('');
    o.push(
      table(
        [
          'round',
          'autocannon req/s',
          'autocannon p50 ms',
          'autocannon p99 ms',
          'paced req/s',
          'paced p50 ms',
          'paced p99 ms',
          'paced p99.9 ms',
          'paced p99 from send ms',
          'control paced p50 ms',
          'control paced p99 ms',
          'service GC % (paced)',
          'GC pauses > 10 ms',
          'loop delay max ms',
        ],
        h.runs.map((x) => [
          x.round,
          num(x.autocannon.reqPerSec),
          num(x.autocannon.latencyMs.p50),
          num(x.autocannon.latencyMs.p99),
          num(x.paced.achievedPerSec),
          num(x.paced.fromDueMs.p50, 2),
          num(x.paced.fromDueMs.p99, 2),
          num(x.paced.fromDueMs.p999, 2),
          num(x.paced.fromSendMs.p99, 2),
          num(x.controlPaced.fromDueMs.p50, 2),
          num(x.controlPaced.fromDueMs.p99, 2),
          num(x.pacedRuntime.gcPct, 1),
          x.pacedRuntime.gcOver10ms,
          num(x.pacedRuntime.loopDelayMaxMs, 1),
        ]),
      ),
    );
    o.push('');
    o.push(
      "autocannon's `overallRate` gives each connection rate/connections requests per 1 s window and sends them " +
        'back to back when the window opens, so the server is saturated for part of every second and the p99 ' +
        "is the burst's (its latencies are also whole milliseconds). The paced generator sends request i at " +
        't0 + i/rate, round-robin over the same number of keep-alive connections, and times it from when it ' +
        'was due (coordinated omission included). The same paced load against the control shows what the ' +
        'machine and the generator add by themselves.',
    );
    o.push('');
  }

  const limiter = r.scenarios.find((s) => s.id === 'limiter');
  if (limiter) {
    const off = limiter.targets.find((t) => t.server === 'nolimit');
    const control = limiter.targets.find((t) => t.server === 'control');
    o.push('## Rate limiter cost (issue 4): GET /v1/me with a JWT');
    o.push('');
    o.push(
      table(
        [
          'limiter',
          'req/s',
          'vs limiter off',
          'vs control',
          'p99 ms',
          'CPU µs/req',
          'CPU µs/req over limiter off',
          'Redis µs/decision',
        ],
        limiter.targets.map((t) => [
          t.label,
          num(t.reqPerSec),
          off && t.server !== 'control' ? num(t.reqPerSec / off.reqPerSec, 3) : '—',
          control && t.server !== 'control' ? num(t.reqPerSec / control.reqPerSec, 3) : '—',
          num(t.p99Ms),
          num(t.cpuUsPerReq),
          off && t.server !== 'control' ? num(t.cpuUsPerReq - off.cpuUsPerReq, 1) : '—',
          t.probe ? num(t.probe.redisUsPerDecision, 2) : '—',
        ]),
      ),
    );
    o.push('');
  }

  const k = r.keyspace;
  if (k) {
    o.push(`## Limiter with ~1 key vs ${num(k.fillKeys)} keys in Redis`);
    o.push('');
    o.push(
      `${num(k.fillKeys)} keys shaped like limiter entries were written under the service's prefix in ` +
        `${num(k.fillSeconds, 1)} s; Redis used_memory grew ${num(k.bytesPerFillerKey, 1)} bytes per key ` +
        `(MEMORY USAGE of one: ${num(k.fillerMemoryUsage)} B).`,
    );
    o.push('');
    o.push(table(SCENARIO_HEADER, scenarioRows([k.few, k.many])));
    o.push('');
  }

  const rl = r.rateLimited;
  if (rl) {
    o.push('## Rate-limited scenario (100 requests per 60 s; 429 expected)');
    o.push('');
    o.push(table(SCENARIO_HEADER, scenarioRows([rl.scenario])));
    o.push('');
    o.push(
      `Over the whole scenario (${num(rl.elapsedS, 1)} s, warm-ups included) the limiter allowed ${num(rl.allowed)} ` +
        `and refused ${num(rl.limited)} requests; a bucket of 100 refilled at one per 600 ms allows at most ` +
        `${num(rl.expectedAllowedMax)}. Responses other than 200 or 429: ${rl.other}.`,
    );
    o.push('');
  }

  if (r.limiterState.length > 0) {
    o.push('## Rate-limit state in Redis');
    o.push('');
    o.push(
      table(
        [
          'when',
          'keys',
          'with TTL',
          'without TTL',
          'expired meanwhile',
          'sample key',
          'MEMORY USAGE B',
          'PTTL ms',
        ],
        r.limiterState.map((s) => [
          s.when,
          s.keys,
          s.withTtl,
          s.withoutTtl,
          s.expired,
          s.sampleKey ? `\`${s.sampleKey}\`` : '—',
          num(s.sampleMemoryUsage),
          num(s.samplePttlMs),
        ]),
      ),
    );
    o.push('');
    o.push(
      'With the unlimited settings every other server uses (1,000,000 per 1000 ms) a key lives about a millisecond ' +
        'after each request (GCRA keeps it only until the bucket would be full again), so the long-lived sample ' +
        'comes from the 100-per-minute server.',
    );
    o.push('');
  }

  if (r.startup) {
    const st = r.startup;
    const samples = (xs: number[] | undefined) => xs?.map((x) => num(x)).join(', ') ?? '';
    o.push('## Start-up and idle memory');
    o.push('');
    o.push(
      'Production starts (NODE_ENV=production, real Postgres and Redis, docs off, MIGRATE_ON_START=false on a ' +
        "migrated database), each a new process stopped again. This tree's servers share a compile cache private " +
        'to the run (NODE_COMPILE_CACHE), filled by one unmeasured start first. *Main-thread CPU* is ' +
        '`/proc/<pid>/task/<pid>/schedstat` read when `/ready` first answered 200.',
    );
    o.push('');
    const rows: (string | number)[][] = [
      [
        'main-thread CPU, start to first /ready 200 (ms)',
        num(median(st.mainThreadCpuMs ?? [])),
        samples(st.mainThreadCpuMs),
      ],
      ['wall time, spawn to first /ready 200 (ms)', num(median(st.wallMs)), samples(st.wallMs)],
      [
        "server's own startupMs (process start to listening)",
        num(median(st.startupMs)),
        samples(st.startupMs),
      ],
      [
        'compile cache (ready line) and its files after the warm-up start',
        '',
        st.compileCacheDir ? `\`${st.compileCacheDir}\`, ${num(st.compileCacheFiles)} files` : 'not recorded',
      ],
    ];
    if (st.baseline)
      rows.push(
        [
          'Node 20 baseline: main-thread CPU (ms)',
          num(median(st.baseline.mainThreadCpuMs)),
          samples(st.baseline.mainThreadCpuMs),
        ],
        ['Node 20 baseline: wall time (ms)', num(median(st.baseline.wallMs)), samples(st.baseline.wallMs)],
        ['Node 20 baseline: startupMs', num(median(st.baseline.startupMs)), samples(st.baseline.startupMs)],
        ['Node 20 baseline: its V8 code cache', '', st.baseline.compileCache.join(', ')],
      );
    rows.push(
      [
        'with MIGRATE_ON_START=true, nothing pending: main-thread CPU / wall (ms)',
        `${num(st.withMigrateOnStart?.mainThreadCpuMs)} / ${num(st.withMigrateOnStart?.wallMs)}`,
        `startupMs ${num(st.withMigrateOnStart?.startupMs)}`,
      ],
      ['idle RSS 3 s after start (MB)', num(r.idleRssMB?.afterStart, 1), ''],
      ['idle RSS 5 s after the last load (MB)', num(r.idleRssMB?.afterLoad, 1), ''],
    );
    if (r.idleRssMB?.baseline)
      rows.push([
        'Node 20 baseline: idle RSS after start / after load (MB)',
        num(r.idleRssMB.baseline.afterStart, 1),
        num(r.idleRssMB.baseline.afterLoad, 1),
      ]);
    o.push(table(['measure', 'median', 'samples'], rows));
    o.push('');
  }

  o.push('## How to read this');
  o.push('');
  o.push(
    '- Latencies from autocannon are whole milliseconds at saturation (100 connections, closed loop): they ' +
      'measure queueing at full load, not per-request cost. CPU µs/req is the per-request cost.',
  );
  o.push(
    '- When load-gen CPU % is near 100 the load generator, not the server, set the pace (typical for the ' +
      'control): that ratio understates how much faster the control is; the CPU ratio does not depend on it.',
  );
  for (const n of r.notes) o.push(`- ${n}`);
  o.push('');
  return o.join('\n');
}

/** Issue 14's side-by-side: this tree on its Node against the --baseline build on Node 20, and the control. */
function baselineComparison(r: BenchReport): string | undefined {
  const b = r.baseline;
  if (!b) return undefined;
  const hot = r.scenarios.find((s) => s.id === 'item-jwt');
  const of = (kind: string) => hot?.targets.find((t) => t.server === kind);
  const svc = of('service');
  const base = of('baseline');
  const ctl = of('control');
  const ratio = (t: TargetSummary | undefined) => (t && ctl ? num(t.reqPerSec / ctl.reqPerSec, 3) : '—');
  const cpuRatio = (t: TargetSummary | undefined) =>
    t && ctl ? num(ctl.cpuUsPerReq / t.cpuUsPerReq, 3) : '—';
  const st = r.startup;
  const rows: (string | number)[][] = [
    ['hot path req/s (item-jwt, median)', num(svc?.reqPerSec), num(base?.reqPerSec), num(ctl?.reqPerSec)],
    ['hot path ratio to bare Fastify', ratio(svc), ratio(base), '1'],
    ['hot path CPU µs/req', num(svc?.cpuUsPerReq), num(base?.cpuUsPerReq), num(ctl?.cpuUsPerReq)],
    ['hot path CPU ratio (control µs ÷ server µs)', cpuRatio(svc), cpuRatio(base), '1'],
    ['hot path p99 ms', num(svc?.p99Ms), num(base?.p99Ms), num(ctl?.p99Ms)],
    ['RSS max under load, 100 connections (MB)', num(svc?.rssMaxMB, 1), num(base?.rssMaxMB, 1), '—'],
    [
      'start to ready, main-thread CPU (ms, median)',
      num(median(st?.mainThreadCpuMs ?? [])),
      num(median(st?.baseline?.mainThreadCpuMs ?? [])),
      '—',
    ],
    [
      'start to ready, wall (ms, median)',
      num(median(st?.wallMs ?? [])),
      num(median(st?.baseline?.wallMs ?? [])),
      '—',
    ],
    [
      'idle RSS 3 s after start (MB)',
      num(r.idleRssMB?.afterStart, 1),
      num(r.idleRssMB?.baseline?.afterStart, 1),
      '—',
    ],
    [
      'idle RSS after the load (MB)',
      num(r.idleRssMB?.afterLoad, 1),
      num(r.idleRssMB?.baseline?.afterLoad, 1),
      '—',
    ],
  ];
  return [
    `## Node ${r.machine.node.replace(/^v/, '')} (this tree) vs Node ${b.node.replace(/^v/, '')} (${b.ref}) vs bare Fastify`,
    '',
    table(
      ['measure', `this tree, \`node src/main.ts\``, `${b.commit}, \`node dist/server.js\``, 'bare Fastify'],
      rows,
    ),
    '',
    `The baseline is ${b.ref} checked out in a temporary worktree, installed and built (\`npm ci && npm run build\`: ` +
      'one bundle with its own V8 code cache) with the system Node, and run on it against the same database with ' +
      'its own Redis prefix; it joins the hot-path rounds (A B C, alternated), the start-up samples (alternated ' +
      "with this tree's) and the idle RSS readings.",
    '',
  ].join('\n');
}
