// `npx node bench/profile.ts`: the service under --cpu-prof while autocannon saturates one route; top self time.
//
// For finding where the hot path's CPU goes. The profile itself (.cpuprofile, open it in Chrome DevTools
// or speedscope for a flame graph) stays in the temp directory printed at the end; the summary is written
// to bench/results/<date>-profile.md. Profiling slows the server down, so its req/s are not comparable to
// `npm run bench`: read the shares, not the rates.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cleanup } from './lib/cleanup.ts';
import { createBenchEnv } from './lib/environment.ts';
import { createFixtures, type Fixtures } from './lib/fixtures.ts';
import { runLoad } from './lib/load.ts';
import { num, table } from './lib/markdown.ts';
import { loopbackOtlpPort, startOtlpSink } from './lib/otlp-sink.ts';
import { REPO_ROOT } from './lib/server-process.ts';
import { Servers } from './lib/servers.ts';

const ROUTES: Record<string, keyof Fixtures['requests']> = {
  'item-jwt': 'itemJwt',
  'item-apikey': 'itemApiKey',
  'item-uncached': 'itemUncached',
  list: 'list',
  me: 'me',
  health: 'health',
  create: 'create',
};

const HELP = `usage: npx node bench/profile.ts [options]

  --scenario <id>     ${Object.keys(ROUTES).join(' | ')} (default item-jwt: the hot path)
  --seconds <n>       profiled load (default 15, after a 5 s warm-up)
  --connections <n>   autocannon connections (default 100)
  --top <n>           functions listed (default 30)
  --service-env <k=v> an environment variable for the service, repeatable (as npm run bench; an OTLP
                      endpoint on 127.0.0.1 gets the bench's sink)
  --out <dir>         where the summary goes (default bench/results)
`;

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** Which package (or part of the service) a script URL belongs to. */
function ownerOf(url: string): string {
  if (url === '') return '(native / V8)';
  if (url.startsWith('node:')) return 'node core';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1] as string;
  const d = /\/src\/(.+)$/.exec(url);
  if (d) return `service: ${d[1]}`;
  return url;
}

export function summarize(profile: CpuProfile, top: number) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const shortUrl = url.replace(/^file:\/\/.*?\/(node_modules|src)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${shortUrl ? `${shortUrl}:${lineNumber + 1}` : ''}`.trim();
    fn.set(key, (fn.get(key) ?? 0) + us);
    const owner = functionName.startsWith('(') ? functionName : ownerOf(url);
    pkg.set(owner, (pkg.get(owner) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { total, idle, functions: sorted(fn).slice(0, top), packages: sorted(pkg).slice(0, top) };
}

async function main(cleanup: Cleanup) {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'item-jwt' },
      seconds: { type: 'string', default: '15' },
      connections: { type: 'string', default: '100' },
      top: { type: 'string', default: '30' },
      'service-env': { type: 'string', multiple: true, default: [] },
      out: { type: 'string', default: join(REPO_ROOT, 'bench/results') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help || !(values.scenario in ROUTES)) {
    process.stdout.write(HELP);
    process.exit(values.help ? 0 : 2);
  }
  const seconds = Number(values.seconds);
  const connections = Number(values.connections);
  const top = Number(values.top);
  const startedAt = new Date();
  const env = await createBenchEnv(cleanup, { jwtExpiresIn: '1h' });
  const serviceEnv = Object.fromEntries(
    values['service-env'].map((pair) => [
      pair.slice(0, pair.indexOf('=')),
      pair.slice(pair.indexOf('=') + 1),
    ]),
  );
  const otlpPort = loopbackOtlpPort(serviceEnv);
  const sink =
    otlpPort === undefined
      ? undefined
      : await startOtlpSink(otlpPort, cleanup, (m) => process.stderr.write(`${m}\n`));
  const servers = new Servers(env, cleanup, undefined, undefined, serviceEnv);
  const profileDir = mkdtempSync(join(os.tmpdir(), 'bench-cpuprof-'));
  const service = await servers.startService('service', {
    logName: 'profiled',
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`],
  });
  const fx = await createFixtures(service.baseUrl, env);
  const request = fx.requests[ROUTES[values.scenario] as keyof Fixtures['requests']];
  process.stderr.write(
    `profiling ${values.scenario}: ${request.method} ${request.path}, 5 s warm-up + ${seconds} s\n`,
  );
  await runLoad({ baseUrl: service.baseUrl, request, connections, durationS: 5, cleanup });
  const load = await runLoad({
    baseUrl: service.baseUrl,
    request,
    connections,
    durationS: seconds,
    server: service,
    cleanup,
  });
  // A graceful exit is what makes V8 write the profile.
  await service.stop();
  service.removeLog();
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file || !existsSync(join(profileDir, file)))
    throw new Error(`no .cpuprofile written in ${profileDir}`);
  const path = join(profileDir, file);
  const s = summarize(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile, top);

  const pct = (us: number) => num((us / s.total) * 100, 1);
  const o: string[] = [];
  o.push(`# CPU profile ${startedAt.toISOString()}: ${values.scenario}`);
  o.push('');
  o.push(
    `${request.method} ${request.path} under autocannon (${connections} connections, ${seconds} s after a 5 s warm-up), ` +
      `service started with --cpu-prof (whole process life: start-up and fixtures included, idle excluded). ` +
      `${num(load.reqPerSec)} req/s while profiled, ${num(load.cpuUsPerReq)} µs CPU per request, ` +
      `${load.errors} errors, ${load.non2xx} non-2xx. Profile: ${path}`,
  );
  if (Object.keys(serviceEnv).length > 0)
    o.push(
      '',
      `Service env: ${Object.entries(serviceEnv)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}.`,
    );
  if (sink) o.push('', sink.summary());
  o.push('');
  o.push('## Self time by function');
  o.push('');
  o.push(
    table(
      ['self %', 'self ms', 'function'],
      s.functions.map(([k, us]) => [pct(us), num(us / 1000), `\`${k}\``]),
    ),
  );
  o.push('');
  o.push('## Self time by package / file');
  o.push('');
  o.push(
    table(
      ['self %', 'self ms', 'owner'],
      s.packages.map(([k, us]) => [pct(us), num(us / 1000), k]),
    ),
  );
  o.push('');
  const markdown = o.join('\n');
  mkdirSync(values.out, { recursive: true });
  const out = join(
    values.out,
    `${startedAt
      .toISOString()
      .replace(/:/g, '-')
      .replace(/\.\d+Z$/, 'Z')}-profile-${values.scenario}.md`,
  );
  writeFileSync(out, markdown);
  await cleanup.run();
  process.stdout.write(`${markdown}\n`);
  process.stderr.write(`\nwrote ${out}\nprofile kept at ${path}\n`);
}

const cleanup = new Cleanup();
cleanup.install(15);
main(cleanup).catch(async (err: unknown) => {
  process.stderr.write(
    `profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  await cleanup.run();
  process.exit(1);
});
