// Owns the checks on .github/workflows/ci.yml and .github/dependabot.yml against the repository they build.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

// biome-ignore lint/suspicious/noExplicitAny: workflow files are walked generically.
type Any = any;

interface Repo {
  scripts: Record<string, string>;
  engines: string;
  /** TEST_* variable -> the default URL test/helpers/env.ts falls back to. */
  testEnv: Record<string, string>;
  exists(path: string): boolean;
}

function repo(): Repo {
  const pkg = JSON.parse(read('package.json'));
  const envTs = read('test/helpers/env.ts');
  const testEnv = Object.fromEntries(
    [...envTs.matchAll(/process\.env\.(TEST_[A-Z_]+) \?\? '([^']+)'/g)].map((m) => [m[1], m[2]]),
  );
  return {
    scripts: pkg.scripts,
    engines: pkg.engines.node,
    testEnv,
    exists: (path) => existsSync(join(ROOT, path)),
  };
}

const steps = (job: Any): Any[] => job.steps ?? [];
const runs = (job: Any): string[] => steps(job).flatMap((s) => (typeof s.run === 'string' ? [s.run] : []));
const usesOf = (workflow: Any): string[] =>
  Object.values(workflow.jobs).flatMap((job: Any) => steps(job).flatMap((s) => (s.uses ? [s.uses] : [])));
const hostPort = (mapping: string | number) => Number(String(mapping).split(':')[0]);

/** Every mistake in the CI workflow that would make it lie, fail or do less than it says. */
function workflowProblems(ci: Any, raw: string, r: Repo): string[] {
  const problems: string[] = [];
  const jobs = Object.entries(ci.jobs ?? {}) as [string, Any][];

  if (JSON.stringify(ci.permissions) !== JSON.stringify({ contents: 'read' }))
    problems.push('top-level permissions must be exactly contents: read');
  for (const [name, job] of jobs)
    for (const [scope, level] of Object.entries(job.permissions ?? {}))
      if (level !== 'read' && level !== 'none') problems.push(`${name}: permission ${scope}: ${level}`);
  if (
    ci.concurrency?.['cancel-in-progress'] !== true ||
    !String(ci.concurrency?.group).includes('github.ref')
  )
    problems.push('concurrency must group by ref and cancel superseded runs');

  // Actions: a version tag (v4, v4.1.2) or a full commit with its version in a comment.
  for (const uses of usesOf(ci)) {
    if (/^[\w.-]+\/[\w.-]+(\/[\w./-]+)?@v\d+(\.\d+){0,2}$/.test(uses)) continue;
    if (/^[\w.-]+\/[\w.-]+(\/[\w./-]+)?@[0-9a-f]{40}$/.test(uses)) {
      const line = raw.split('\n').find((l) => l.includes(uses));
      if (!/#\s*v\d+/.test(line ?? '')) problems.push(`${uses}: a commit pin needs a # vX.Y.Z comment`);
      continue;
    }
    problems.push(`${uses}: not pinned to a version`);
  }

  // Every npm script it runs exists.
  for (const [name, job] of jobs)
    for (const run of runs(job)) {
      for (const m of run.matchAll(/npm run ([\w:-]+)/g))
        if (!(m[1] && m[1] in r.scripts))
          problems.push(`${name}: npm run ${m[1]} is not a package.json script`);
      if (/npm (test|t)\b/.test(run) && !('test' in r.scripts)) problems.push(`${name}: no test script`);
      for (const m of run.matchAll(/shellcheck ((?:[\w./-]+\s*)+)/g))
        for (const file of (m[1] as string).trim().split(/\s+/))
          if (!r.exists(file)) problems.push(`${name}: shellcheck ${file} does not exist`);
    }
  for (const [name, job] of jobs)
    for (const s of steps(job).filter((x) => String(x.uses).startsWith('actions/setup-node@'))) {
      const major = Number(s.with?.['node-version']);
      const min = Number(/(\d+)/.exec(r.engines)?.[1]);
      if (!(major >= min))
        problems.push(`${name}: node-version ${s.with?.['node-version']} is below ${r.engines}`);
    }

  // The tests: the job running `npm test` has the services the test helpers expect, where they expect them.
  const testJobs = jobs.filter(([, job]) => runs(job).some((x) => /^npm test\b/m.test(x)));
  if (testJobs.length === 0) problems.push('no job runs npm test');
  for (const [name, job] of testJobs) {
    const services = Object.values(job.services ?? {}) as Any[];
    const env = job.env ?? {};
    for (const [key, fallback] of Object.entries(r.testEnv)) {
      const value = env[key];
      if (value === undefined) {
        problems.push(`${name}: ${key} is not set`);
        continue;
      }
      const url = new URL(value);
      const kind = new URL(fallback).protocol.replace(/:$/, '');
      const service = services.find((s) =>
        (s.ports ?? []).some((p: string) => hostPort(p) === Number(url.port)),
      );
      if (!service) problems.push(`${name}: ${key} port ${url.port} is no service's published port`);
      else if (!String(service.image).startsWith(kind === 'postgres' ? 'postgres:' : `${kind}:`))
        problems.push(`${name}: ${key} points at ${service.image}, not ${kind}`);
      if (kind === 'postgres' && service) {
        const trust = service.env?.POSTGRES_HOST_AUTH_METHOD === 'trust';
        const password = service.env?.POSTGRES_PASSWORD;
        if (!trust && decodeURIComponent(url.password) !== password)
          problems.push(`${name}: ${key} has no password the postgres service accepts`);
      }
    }
    for (const key of Object.keys(env).filter((k) => k.startsWith('TEST_')))
      if (!(key in r.testEnv)) problems.push(`${name}: ${key} is not a variable test/helpers/env.ts reads`);
    for (const s of services)
      if (!/^[\w./-]+:[\w.-]+$/.test(s.image) || /:latest$/.test(s.image))
        problems.push(`${name}: service image ${s.image} has no version tag`);
    // pg_dump refuses a server newer than itself: the backup tests need a client >= the service.
    const serverMajor = Number(
      /^postgres:(\d+)/.exec(services.find((s) => /^postgres:/.test(s.image))?.image)?.[1],
    );
    const client = runs(job).join('\n');
    const clientMajor = Number(/postgresql-client-(\d+)/.exec(client)?.[1]);
    if (!(clientMajor >= serverMajor))
      problems.push(
        `${name}: postgresql-client-${clientMajor} is older than the postgres:${serverMajor} service`,
      );
    if (!client.includes(`/usr/lib/postgresql/${clientMajor}/bin`))
      problems.push(`${name}: the PostgreSQL ${clientMajor} client tools are not put first on PATH`);
    const tools = `${client}\n${steps(job)
      .map((s) => s.uses ?? '')
      .join('\n')}`;
    for (const [tool, hint] of [
      ['kubectl', /setup-kubectl|kubectl/],
      ['promtool', /\bprometheus\b/],
      ['redis-server', /redis-server/],
    ] as const)
      if (!hint.test(tools)) problems.push(`${name}: ${tool} is not installed for the tests that need it`);
  }

  // The image: built from the repository's Dockerfile, kept local, scanned, failing on what can be fixed.
  const build = jobs
    .flatMap(([, job]) => steps(job))
    .find((s) => String(s.uses).startsWith('docker/build-push-action@'));
  if (!build) problems.push('no docker/build-push-action step');
  else {
    if (!r.exists(build.with?.file ?? 'Dockerfile'))
      problems.push(`the build's Dockerfile ${build.with?.file} does not exist`);
    if (build.with?.load !== true || build.with?.push === true)
      problems.push('the build must load the image and never push');
    const scan = jobs
      .flatMap(([, job]) => steps(job))
      .find((s) => String(s.uses).startsWith('aquasecurity/trivy-action@'));
    if (!scan) problems.push('no trivy scan');
    else {
      if (
        !String(build.with?.tags)
          .split(/[\s,]+/)
          .includes(scan.with?.['image-ref'])
      )
        problems.push(`trivy scans ${scan.with?.['image-ref']}, which the build does not tag`);
      if (String(scan.with?.['exit-code']) !== '1') problems.push('trivy must fail the job (exit-code 1)');
      if (scan.with?.['ignore-unfixed'] !== true) problems.push('trivy must ignore unfixed vulnerabilities');
      const severities = String(scan.with?.severity).split(',').sort();
      if (JSON.stringify(severities) !== JSON.stringify(['CRITICAL', 'HIGH']))
        problems.push('trivy must fail on CRITICAL and HIGH');
    }
  }
  return problems;
}

function dependabotProblems(config: Any, r: Repo): string[] {
  const problems: string[] = [];
  if (config.version !== 2) problems.push('version must be 2');
  const updates = (config.updates ?? []) as Any[];
  const byEcosystem = new Map(updates.map((u) => [u['package-ecosystem'], u]));
  for (const [ecosystem, manifest] of [
    ['npm', 'package.json'],
    ['github-actions', '.github/workflows/ci.yml'],
    ['docker', 'Dockerfile'],
  ] as const) {
    const u = byEcosystem.get(ecosystem);
    if (!u) {
      problems.push(`no ${ecosystem} updates`);
      continue;
    }
    if (u.schedule?.interval !== 'weekly') problems.push(`${ecosystem}: not weekly`);
    const dir = String(u.directory).replace(/^\//, '');
    const path = ecosystem === 'github-actions' ? manifest : join(dir, manifest);
    if (!r.exists(path)) problems.push(`${ecosystem}: ${path} does not exist`);
  }
  const npmGroups = Object.values(byEcosystem.get('npm')?.groups ?? {}) as Any[];
  if (!npmGroups.some((g) => JSON.stringify([...(g['update-types'] ?? [])].sort()) === '["minor","patch"]'))
    problems.push('npm: minor and patch updates are not grouped');
  return problems;
}

const ciText = read('.github/workflows/ci.yml');
const ci = parse(ciText);
const dependabot = parse(read('.github/dependabot.yml'));

describe('.github/workflows/ci.yml', () => {
  it('when GitHub runs it, then every script, port, variable, path and pin it relies on matches the repository', () => {
    expect(workflowProblems(ci, ciText, repo())).toEqual([]);
  });

  it('when it runs, then it lints, typechecks, tests and builds and scans the image', () => {
    const all = Object.values(ci.jobs)
      .flatMap((job: Any) => runs(job))
      .join('\n');
    for (const command of ['npm ci', 'npm run lint', 'npm run typecheck', 'npm test'])
      expect(all, command).toContain(command);
    expect(ci.on).toHaveProperty('pull_request');
    expect(ci.on.push.branches).toContain('main');
    expect(JSON.stringify(ci)).not.toMatch(/secrets\./);
  });

  it('when the workflow is broken in the ways that happen, then each check names the problem', () => {
    const broken = structuredClone(ci);
    broken.permissions = { contents: 'write' };
    broken.jobs.lint.steps.push({ run: 'npm run no-such-script' });
    broken.jobs.test.env.TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5433/postgres';
    broken.jobs.test.env.TEST_REDIS_HOST = 'localhost';
    broken.jobs.test.services.postgres.image = 'postgres:18';
    const build = broken.jobs.image.steps.find((s: Any) =>
      String(s.uses).startsWith('docker/build-push-action@'),
    );
    build.with.file = 'Dockerfile.missing';
    build.with.push = true;
    broken.jobs.image.steps.push({ uses: 'some/action@main' });
    const scan = broken.jobs.image.steps.find((s: Any) =>
      String(s.uses).startsWith('aquasecurity/trivy-action@'),
    );
    scan.with.severity = 'CRITICAL';
    expect(workflowProblems(broken, ciText, repo())).toEqual([
      'top-level permissions must be exactly contents: read',
      'some/action@main: not pinned to a version',
      'lint: npm run no-such-script is not a package.json script',
      "test: TEST_DATABASE_URL port 5433 is no service's published port",
      'test: TEST_REDIS_HOST is not a variable test/helpers/env.ts reads',
      'test: postgresql-client-17 is older than the postgres:18 service',
      "the build's Dockerfile Dockerfile.missing does not exist",
      'the build must load the image and never push',
      'trivy must fail on CRITICAL and HIGH',
    ]);
  });
});

describe('.github/dependabot.yml', () => {
  it('when Dependabot reads it, then npm, GitHub Actions and the Dockerfile are updated weekly, minor and patch npm updates grouped', () => {
    expect(dependabotProblems(dependabot, repo())).toEqual([]);
  });

  it('when an ecosystem is missing or points at the wrong folder, then the check names it', () => {
    const broken = structuredClone(dependabot);
    broken.updates = broken.updates.filter((u: Any) => u['package-ecosystem'] !== 'github-actions');
    broken.updates.find((u: Any) => u['package-ecosystem'] === 'docker').directory = '/';
    broken.updates.find((u: Any) => u['package-ecosystem'] === 'npm').groups = {};
    expect(dependabotProblems(broken, repo())).toEqual([
      'no github-actions updates',
      'docker: Dockerfile does not exist',
      'npm: minor and patch updates are not grouped',
    ]);
  });
});
