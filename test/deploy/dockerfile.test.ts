// The image, by construction: docker/Dockerfile and .dockerignore read as the builder reads them.
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Dockerfile,
  type Instruction,
  parseDockerfile,
  parseDockerignore,
  type Stage,
  words,
} from './support/dockerfile.ts';
import { exists, KNOWN_ENV, listFiles, readText, SECRET_KEYS } from './support/repo.ts';

const dockerfile = parseDockerfile(readText('docker/Dockerfile'));
const dockerignore = parseDockerignore(readText('.dockerignore'));
const finalStage = dockerfile.stages.at(-1) as Stage;
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const last = (stage: Stage, keyword: string) => all(stage, keyword).at(-1);

/** The stage an instruction's `--from` or a FROM names, by name or index. */
function stageNamed(df: Dockerfile, ref: string): Stage | undefined {
  return df.stages.find((s) => s.name === ref.toLowerCase() || String(s.index) === ref);
}

/** The chain of stages a stage is built on, itself first. */
function lineage(df: Dockerfile, stage: Stage): Stage[] {
  const parent = stageNamed(df, stage.from);
  return parent && parent.index < stage.index ? [stage, ...lineage(df, parent)] : [stage];
}

/** The working directory in effect for an instruction (WORKDIRs inherited through FROM <stage>). */
function workdirAt(df: Dockerfile, stage: Stage, ins?: Instruction): string {
  let dir = '/';
  for (const s of lineage(df, stage).reverse())
    for (const i of s.instructions) {
      if (s === stage && i === ins) return dir;
      if (i.keyword === 'WORKDIR') dir = posix.resolve(dir, i.args);
    }
  return dir;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
  ins: Instruction;
}

function copies(df: Dockerfile, stage: Stage): Copy[] {
  return all(stage, 'COPY').map((ins) => {
    const parts = words(ins.args);
    const dest = posix.resolve(workdirAt(df, stage, ins), parts.at(-1) as string);
    return { from: ins.flags.from, sources: parts.slice(0, -1), dest, ins };
  });
}

/** Where a copied source lands: COPY src ./src -> /app/src; COPY a b ./ -> /app/a, /app/b. */
function landing(copy: Copy, source: string): string {
  const trailing = copy.ins.args.trim().endsWith('/') || copy.sources.length > 1;
  return trailing ? posix.join(copy.dest, posix.basename(source)) : copy.dest;
}

function runHealthcheck(command: string[], env: Record<string, string>): Promise<number | null> {
  return new Promise((resolve) => {
    const [bin, ...args] = command as [string, ...string[]];
    const child = spawn(bin === 'node' ? process.execPath : bin, args, {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    child.on('exit', (code) => resolve(code));
  });
}

async function withServer<T>(status: number, fn: (port: number) => Promise<T>): Promise<T> {
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(req.url === '/health' ? status : 404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    return await fn((server.address() as AddressInfo).port);
  } finally {
    await new Promise((r) => server.close(r));
  }
}

describe('the Dockerfile reader', () => {
  it('when instructions span lines with comments between them, then they are joined as the builder joins them', () => {
    const df = parseDockerfile(
      [
        '# syntax=docker/dockerfile:1',
        'FROM node:24.1.0-alpine AS a',
        'RUN apk add \\',
        '# a comment inside the continuation',
        '    tini \\',
        '    && true',
        'CMD ["node", "x.js"]',
        'FROM a',
        'CMD node x.js',
      ].join('\n'),
    );
    expect(df.directives).toEqual({ syntax: 'docker/dockerfile:1' });
    expect(df.stages.map((s) => [s.name, s.from])).toEqual([
      ['a', 'node:24.1.0-alpine'],
      [undefined, 'a'],
    ]);
    expect(df.stages[0]?.instructions[0]?.args.replace(/\s+/g, ' ')).toBe('apk add tini && true');
    expect(df.stages[0]?.instructions[1]?.json).toEqual(['node', 'x.js']);
    expect(df.stages[1]?.instructions[0]?.json).toBeNull();
  });

  it('when a CMD array is not valid JSON, then it is not exec form (the builder would run it through a shell)', () => {
    const df = parseDockerfile("FROM x\nCMD ['node', 'x.js']");
    expect(df.stages[0]?.instructions[0]?.json).toBeNull();
  });

  it('when .dockerignore has an allowlist with exceptions, then the last matching pattern decides, parents included', () => {
    const di = parseDockerignore('*\n!src\n**/.env\n');
    expect(di.ignores('.git/HEAD')).toBe(true);
    expect(di.ignores('src/app.ts')).toBe(false);
    expect(di.ignores('src/deep/dir/x.ts')).toBe(false);
    expect(di.ignores('src/.env')).toBe(true);
    expect(di.ignores('package.json')).toBe(true);
  });
});

describe('docker/Dockerfile', () => {
  it('when read, then it is multi-stage on a pinned Node 24 base, and every COPY --from names an earlier stage', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(3);
    expect(dockerfile.stages.map((s) => s.name)).toEqual(
      expect.arrayContaining(['deps', 'build', 'runtime']),
    );
    for (const stage of dockerfile.stages) {
      const parent = stageNamed(dockerfile, stage.from);
      if (parent) expect(parent.index, `${stage.name} builds on a later stage`).toBeLessThan(stage.index);
      // Node 24 LTS, pinned to an exact release (no floating `24`, `lts` or `latest`).
      else
        expect(stage.from).toMatch(
          /^node:24\.\d+\.\d+-(bookworm-slim|bookworm|trixie-slim|alpine(\d+\.\d+)?)$/,
        );
      for (const copy of copies(dockerfile, stage).filter((c) => c.from !== undefined)) {
        const source = stageNamed(dockerfile, copy.from as string);
        expect(source, `COPY --from=${copy.from} on line ${copy.ins.line}`).toBeDefined();
        expect(source?.index).toBeLessThan(stage.index);
      }
    }
    for (const ins of dockerfile.stages.flatMap((s) => s.instructions))
      expect(ins.args, `line ${ins.line}`).not.toMatch(/\$\{?[A-Z_]*\}?:latest|:latest\b/);
  });

  it('when the final stage is read, then its node_modules come from `npm ci --omit=dev` and nothing else installs packages there', () => {
    const nodeModules = copies(dockerfile, finalStage).filter((c) =>
      c.sources.some((s) => posix.basename(s) === 'node_modules'),
    );
    expect(nodeModules).toHaveLength(1);
    const producer = stageNamed(dockerfile, nodeModules[0]?.from ?? '') as Stage;
    const installs = lineage(dockerfile, producer)
      .flatMap((s) => all(s, 'RUN'))
      .filter((r) => /\bnpm (ci|install|i)\b/.test(r.args));
    expect(installs.length).toBeGreaterThan(0);
    for (const run of installs) expect(run.args).toMatch(/--omit=dev|--production\b/);
    // The runtime does not inherit a stage that installed dev dependencies.
    for (const s of lineage(dockerfile, finalStage))
      for (const run of all(s, 'RUN')) expect(run.args).not.toMatch(/\bnpm (ci|install|i)\b/);
  });

  it('when the final stage is read, then it runs as a numeric non-root user (runAsNonRoot can verify it)', () => {
    const user = last(finalStage, 'USER');
    expect(user, 'the final stage sets no USER: it would run as root').toBeDefined();
    const [uid, gid] = (user?.args ?? '').split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    if (gid !== undefined) expect(Number(gid)).toBeGreaterThan(0);
  });

  it('when started, then an init installed in the image is PID 1 (exec form) and runs node dist/server.js (exec form)', () => {
    const entrypoint = last(finalStage, 'ENTRYPOINT');
    const cmd = last(finalStage, 'CMD');
    expect(entrypoint?.json, 'ENTRYPOINT must be exec form').not.toBeNull();
    expect(cmd?.json, 'CMD must be exec form').not.toBeNull();
    const [init, ...initArgs] = entrypoint?.json ?? [];
    expect(posix.basename(init as string)).toBe('tini');
    expect(initArgs).toEqual(['--']);
    // Installed from the distro: /usr/bin/tini on Debian, /sbin/tini on Alpine.
    const installs = lineage(dockerfile, finalStage)
      .flatMap((s) => all(s, 'RUN'))
      .map((r) => r.args);
    const debian = installs.some((r) => /apt-get install\b.*\btini\b/.test(r));
    const alpine = installs.some((r) => /apk add\b.*\btini\b/.test(r));
    expect(debian || alpine, 'tini is not installed in the final stage').toBe(true);
    expect(init).toBe(debian ? '/usr/bin/tini' : '/sbin/tini');
    expect(cmd?.json).toEqual(['node', 'dist/server.js']);
  });

  it('when the image runs, then every path the compiled code reads at run time is there (dist, package.json, migrations)', () => {
    const root = workdirAt(dockerfile, finalStage);
    const landed = new Map<string, Copy>();
    for (const copy of copies(dockerfile, finalStage))
      for (const source of copy.sources) landed.set(landing(copy, source), copy);
    const provides = (path: string) => [...landed.keys()].some((p) => path === p || path.startsWith(`${p}/`));

    // CMD's script, and the migration CLI the compose service and the Kubernetes Job run.
    for (const script of ['dist/server.js', 'dist/cli/migrate.js']) {
      expect(provides(posix.join(root, script)), script).toBe(true);
      expect(exists(script.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')), script).toBe(true);
    }
    // Files found next to the compiled module (new URL('../../x', import.meta.url)) must ship too.
    const needed = new Set<string>();
    for (const file of listFiles('src').filter((f) => f.endsWith('.ts'))) {
      const compiled = posix.join(root, file.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
      for (const m of readText(file).matchAll(/new URL\(\s*'([^']+)'\s*,\s*import\.meta\.url\s*\)/g))
        needed.add(posix.resolve(posix.dirname(compiled), m[1] as string));
    }
    // Found by the scan (so it is not vacuous); any new one must ship too.
    expect([...needed]).toEqual(
      expect.arrayContaining([posix.join(root, 'migrations'), posix.join(root, 'package.json')]),
    );
    for (const path of needed) expect(provides(path), `${path} is read at run time`).toBe(true);
    // dist/ is what the build stage compiled with tsconfig.build.json (src -> dist).
    const dist = landed.get(posix.join(root, 'dist'));
    expect(dist?.from).toBeDefined();
    const build = stageNamed(dockerfile, dist?.from as string) as Stage;
    expect(all(build, 'RUN').some((r) => /npm run build|tsc -p tsconfig\.build\.json/.test(r.args))).toBe(
      true,
    );
    expect(dist?.sources).toEqual([posix.join(workdirAt(dockerfile, build), 'dist')]);
    const tsconfig = JSON.parse(readText('tsconfig.build.json')) as {
      extends?: string;
      compilerOptions: { rootDir: string; outDir: string };
    };
    expect(tsconfig.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    const buildInputs = lineage(dockerfile, build).flatMap((s) =>
      copies(dockerfile, s).flatMap((c) => c.sources),
    );
    // Scripts `npm run build` runs (the bundler) must be in the build stage too.
    const buildScript = (JSON.parse(readText('package.json')) as { scripts: Record<string, string> }).scripts
      .build as string;
    const scripts = [...buildScript.matchAll(/node (scripts\/\S+)/g)].map((m) => m[1] as string);
    expect(scripts).toContain('scripts/bundle.mjs');
    // ...and the files those scripts read next to themselves (the bundle's loader).
    for (const script of [...scripts])
      for (const m of readText(script).matchAll(/new URL\(\s*'\.\/([^']+)'\s*,\s*import\.meta\.url\s*\)/g))
        scripts.push(posix.join(posix.dirname(script), m[1] as string));
    expect(scripts).toContain('scripts/server-loader.mjs');
    for (const file of [
      'tsconfig.build.json',
      tsconfig.extends?.replace(/^\.\//, ''),
      'src',
      'package-lock.json',
      ...scripts,
    ])
      if (file !== undefined) expect(buildInputs, `the build stage needs ${file}`).toContain(file);
  });

  it('when files are copied from the build context, then each exists and .dockerignore lets it through', () => {
    for (const stage of dockerfile.stages)
      for (const copy of copies(dockerfile, stage).filter((c) => c.from === undefined))
        for (const source of copy.sources) {
          expect(exists(source), `COPY ${source} (line ${copy.ins.line})`).toBe(true);
          const files = exists(source) && !source.includes('.') ? listFiles(source) : [source];
          for (const file of files)
            expect(dockerignore.ignores(file), `${file} is excluded by .dockerignore`).toBe(false);
        }
  });

  it('when the context is sent, then .dockerignore keeps secrets, local state and unrelated trees out', () => {
    for (const path of [
      '.env',
      'src/.env',
      '.env.production',
      '.git/HEAD',
      'node_modules/fastify/package.json',
      'dist/server.js',
      '.data/pglite/PG_VERSION',
      'docker/secrets/jwt_secret.txt',
      'docker/secrets/database_url.txt',
      'k8s/base/secret.yaml',
      'test/config.test.ts',
      'coverage/index.html',
      'npm-debug.log',
    ])
      expect(dockerignore.ignores(path), path).toBe(true);
  });

  it('when the image is built, then no ADD fetches a remote URL and no ENV or ARG carries a secret', () => {
    const instructions = [...dockerfile.globalArgs, ...dockerfile.stages.flatMap((s) => s.instructions)];
    for (const add of instructions.filter((i) => i.keyword === 'ADD'))
      expect(add.args, `ADD on line ${add.line}`).not.toMatch(/(https?|git|ftp):\/\/|git@/);
    const secretish = /SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|_URL$/i;
    for (const ins of instructions.filter((i) => i.keyword === 'ENV' || i.keyword === 'ARG')) {
      const pairs = [...ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(?:[= ]("[^"]*"|\S+))?/g)];
      for (const [, key, value] of pairs) {
        expect(key, `${ins.keyword} ${key} on line ${ins.line}`).not.toMatch(secretish);
        expect(SECRET_KEYS as readonly string[]).not.toContain(key);
        expect(value ?? '', `${ins.keyword} ${key} on line ${ins.line}`).not.toMatch(/:\/\/[^/\s]*:[^/\s]*@/);
      }
    }
    // What the runtime image sets is configuration the service knows.
    for (const env of lineage(dockerfile, finalStage).flatMap((s) => all(s, 'ENV')))
      for (const [, key] of env.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=/g))
        expect(KNOWN_ENV.has(key as string), `ENV ${key} is not a key src/config.ts knows`).toBe(true);
  });

  it('when inspected, then it carries the OCI labels', () => {
    const labels = all(finalStage, 'LABEL')
      .map((l) => l.args)
      .join(' ');
    for (const key of ['title', 'description', 'source', 'licenses', 'version', 'revision', 'created'])
      expect(labels).toMatch(new RegExp(`org\\.opencontainers\\.image\\.${key}=`));
  });

  describe('HEALTHCHECK', () => {
    const healthcheck = last(finalStage, 'HEALTHCHECK') as Instruction;
    const command = healthcheck?.json as string[];

    it('when read, then it is exec form with node (no curl or wget in the image) and its fetch times out before Docker does', () => {
      expect(healthcheck, 'no HEALTHCHECK in the final stage').toBeDefined();
      expect(command?.[0]).toBe('node');
      const abortMs = Number(/AbortSignal\.timeout\((\d+)\)/.exec(command.join(' '))?.[1]);
      const timeout = healthcheck.flags.timeout as string;
      expect(timeout).toMatch(/^\d+s$/);
      expect(abortMs).toBeLessThan(Number.parseInt(timeout, 10) * 1000);
    });

    it('when /health answers 200 on PORT, then it exits 0; on 503 or with nothing listening, then non-zero', async () => {
      await withServer(200, async (port) => {
        expect(await runHealthcheck(command, { PORT: String(port) })).toBe(0);
      });
      await withServer(503, async (port) => {
        expect(await runHealthcheck(command, { PORT: String(port) })).toBe(1);
      });
      const closed = await withServer(200, async (port) => port);
      expect(await runHealthcheck(command, { PORT: String(closed) })).toBe(1);
    });
  });
});
