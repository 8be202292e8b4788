// The image, by construction: docker/Dockerfile and .dockerignore read as the builder reads them.
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Dockerfile,
  envPairs,
  type Instruction,
  parseDockerfile,
  parseDockerignore,
  type Stage,
  words,
} from './support/dockerfile.ts';
import { moduleGraph } from './support/module-graph.ts';
import { exists, KNOWN_ENV, listFiles, readText, SECRET_KEYS } from './support/repo.ts';

const dockerfile = parseDockerfile(readText('docker/Dockerfile'));
const dockerignore = parseDockerignore(readText('.dockerignore'));
const finalStage = dockerfile.stages.at(-1) as Stage;
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const last = (stage: Stage, keyword: string) => all(stage, keyword).at(-1);
/** Variables Node itself reads, which the image may set beside the service's configuration. */
const NODE_ENV_VARS = new Set(['NODE_OPTIONS', 'NODE_COMPILE_CACHE']);

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
  const cmd = last(finalStage, 'CMD');
  /** What lands in the image: the COPYs of the final stage and of the stages it is built on. */
  const imageCopies = lineage(dockerfile, finalStage).flatMap((s) => copies(dockerfile, s));
  const user = last(finalStage, 'USER');
  /** Every ENV variable the final stage runs with, inherited ones included (later ones win). */
  const runtimeEnv = new Map(
    lineage(dockerfile, finalStage)
      .reverse()
      .flatMap((s) => all(s, 'ENV'))
      .flatMap(envPairs),
  );
  const lock = JSON.parse(readText('package-lock.json')) as {
    packages: Record<string, { version?: string; dev?: boolean; devOptional?: boolean }>;
  };
  const pkg = JSON.parse(readText('package.json')) as {
    dependencies: Record<string, string>;
    scripts: Record<string, string>;
  };
  /** The script `npm start` runs (`node src/main.ts`). */
  const startScript = /^node (\S+)$/.exec(pkg.scripts.start ?? '')?.[1];
  /** The CMD's script and the CLIs run in the container (migrate service and Job, `exec ... auth.ts`). */
  const runtimeEntries = () => [
    cmd?.json?.[1] as string,
    ...listFiles('src/cli').filter((f) => f.endsWith('.ts')),
  ];

  it('when read, then it is multi-stage on the exact Node 24 the tests run on, and every COPY --from names an earlier stage', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile.stages.map((s) => s.name)).toEqual(expect.arrayContaining(['deps', 'runtime']));
    // The `node` devDependency is the Node that npm scripts and tests run on: the image runs the same.
    const nodeVersion = lock.packages['node_modules/node']?.version as string;
    expect(nodeVersion).toMatch(/^24\.\d+\.\d+$/);
    const bases = new Set<string>();
    for (const stage of dockerfile.stages) {
      const parent = stageNamed(dockerfile, stage.from);
      if (parent) expect(parent.index, `${stage.name} builds on a later stage`).toBeLessThan(stage.index);
      else bases.add(stage.from);
      for (const copy of copies(dockerfile, stage).filter((c) => c.from !== undefined)) {
        const source = stageNamed(dockerfile, copy.from as string);
        expect(source, `COPY --from=${copy.from} on line ${copy.ins.line}`).toBeDefined();
        expect(source?.index).toBeLessThan(stage.index);
      }
    }
    // One base for every stage: a native addon built in `deps` runs on the runtime's libc.
    expect([...bases]).toEqual([`node:${nodeVersion}-bookworm-slim`]);
    const labels = all(finalStage, 'LABEL')
      .map((l) => l.args)
      .join(' ');
    expect(labels).toContain(
      `org.opencontainers.image.base.name="docker.io/library/node:${nodeVersion}-bookworm-slim"`,
    );
    for (const ins of dockerfile.stages.flatMap((s) => s.instructions))
      expect(ins.args, `line ${ins.line}`).not.toMatch(/\$\{?[A-Z_]*\}?:latest|:latest\b/);
  });

  describe('production dependencies', () => {
    const nodeModules = imageCopies.filter((c) =>
      c.sources.some((s) => posix.basename(s) === 'node_modules'),
    );
    const producer = stageNamed(dockerfile, nodeModules[0]?.from ?? '') as Stage;
    const installs = () =>
      lineage(dockerfile, producer)
        .flatMap((s) => all(s, 'RUN'))
        .filter((r) => /\bnpm (ci|install|i)\b/.test(r.args));

    it('when the final stage is read, then its node_modules come from one `npm ci --omit=dev` that runs install scripts, and nothing else installs packages there', () => {
      expect(nodeModules).toHaveLength(1);
      expect(installs()).toHaveLength(1);
      const [install] = installs() as [Instruction];
      expect(install.args).toMatch(/\bnpm ci\b[^&;]*--omit=dev/);
      // Addons that compile or fetch their binary at install need their scripts.
      expect(install.args).not.toMatch(/--ignore-scripts/);
      expect(install.flags.mount).toMatch(/type=cache,target=\/root\/\.npm/);
      for (const s of lineage(dockerfile, finalStage))
        for (const run of all(s, 'RUN')) expect(run.args).not.toMatch(/\bnpm (ci|install|i)\b/);
    });

    it("when installed, then no dev dependency reaches the image: --omit=dev leaves out the lockfile's dev packages, and the RUN deletes the type-only packages it still installs", () => {
      const [install] = installs() as [Instruction];
      const removed = [...install.args.matchAll(/\brm -rf ([\w@./ -]+)/g)].flatMap((m) =>
        (m[1] as string).trim().split(/\s+/),
      );
      const isRemoved = (path: string) => removed.some((r) => path === r || path.startsWith(`${r}/`));
      // Type declarations only, never loaded at run time: @types/* and undici-types (@types/node's).
      const typesOnly = (path: string) => /(^|\/)node_modules\/(@types\/[^/]+|undici-types)$/.test(path);
      // What --omit=dev still installs that is dev-only: devOptional packages (a dev dependency that a
      // production package names as an optional peer) and the type packages production ones depend on
      // (@opentelemetry/instrumentation-pg -> @types/pg, also nested under it).
      const installed = Object.entries(lock.packages).filter(
        ([path, p]) => p.devOptional || (!p.dev && typesOnly(path)),
      );
      // Found in the lockfile (so this is not vacuous): @types/pg.
      expect(installed.map(([path]) => path)).toContain('node_modules/@types/pg');
      for (const [path] of installed)
        expect(isRemoved(path), `${path} is installed by --omit=dev`).toBe(true);
      // Only packages never loaded at run time are deleted.
      for (const [path, p] of Object.entries(lock.packages))
        if (isRemoved(path)) expect(p.devOptional || typesOnly(path), path).toBe(true);
    });
  });

  it('when the final stage is read, then it runs as a numeric non-root user (runAsNonRoot can verify it)', () => {
    expect(user, 'the final stage sets no USER: it would run as root').toBeDefined();
    const [uid, gid] = (user?.args ?? '').split(':');
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    if (gid !== undefined) expect(Number(gid)).toBeGreaterThan(0);
  });

  it('when started, then an init installed in the image is PID 1 (exec form) and runs node src/main.ts, plain (exec form)', () => {
    const entrypoint = last(finalStage, 'ENTRYPOINT');
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
    // The source itself, what `npm start` runs: no build output, no loader or --import hook.
    expect(startScript).toBe('src/main.ts');
    expect(cmd?.json).toEqual(['node', startScript]);
    expect(runtimeEnv.get('NODE_OPTIONS') ?? '').not.toMatch(
      /--(import|require|loader|experimental-loader)\b|-r\s/,
    );
  });

  it('when the image runs, then every module the server and its CLIs load, and every file they read next to themselves, is in it', () => {
    const root = workdirAt(dockerfile, finalStage);
    const landed = imageCopies.flatMap((copy) => copy.sources.map((source) => landing(copy, source)));
    const provides = (path: string) => landed.some((p) => path === p || path.startsWith(`${p}/`));
    const graph = moduleGraph(runtimeEntries());
    expect(graph.missing, 'relative imports that name no file').toEqual([]);
    // Found by the walk (so it is not vacuous): main.ts loads server.ts with import().
    expect(graph.modules).toEqual(
      expect.arrayContaining(['src/server.ts', 'src/app.ts', 'src/lib/migrations.ts']),
    );
    for (const module of graph.modules) expect(provides(posix.join(root, module)), module).toBe(true);
    expect(graph.filesRead).toEqual(expect.arrayContaining(['migrations', 'package.json']));
    for (const path of graph.filesRead)
      expect(provides(posix.join(root, path)), `${path} is read at run time`).toBe(true);
  });

  it('when the image runs, then every package its modules import is a production dependency, and no tsconfig is needed', () => {
    const { packages } = moduleGraph(runtimeEntries());
    expect(packages).toEqual(expect.arrayContaining(['fastify', 'pg', 'node-pg-migrate']));
    for (const name of packages)
      expect(Object.keys(pkg.dependencies), `${name} is imported at run time`).toContain(name);
    // Type stripping reads no tsconfig: it is not even in the build context.
    expect(dockerignore.ignores('tsconfig.json')).toBe(true);
  });

  describe('compile cache', () => {
    const cacheDir = runtimeEnv.get('NODE_COMPILE_CACHE') as string;
    const cacheCopy = imageCopies.find((c) => c.dest === cacheDir);
    const warmStage = stageNamed(dockerfile, cacheCopy?.from ?? '') as Stage;

    it('when the server starts, then Node reads its compile cache from a folder the image ships', () => {
      expect(cacheDir, 'ENV NODE_COMPILE_CACHE').toMatch(/^\//);
      expect(cacheCopy, `no COPY --from=<stage> ... ${cacheDir} in the final stage`).toBeDefined();
      expect(warmStage).toBeDefined();
      // src/main.ts turns the cache on itself (module.enableCompileCache() honours NODE_COMPILE_CACHE).
      expect(readText(cmd?.json?.[1] as string)).toMatch(/module\.enableCompileCache\(\)/);
    });

    it("when built, then the cache is made by loading the server's modules as the runtime user, over the same files and NODE_OPTIONS", () => {
      const source = cacheCopy?.sources[0] as string;
      const warm = all(warmStage, 'RUN').find((r) => r.args.includes(`NODE_COMPILE_CACHE=${source}`));
      expect(warm, `no RUN in ${warmStage.name} writes the cache to ${source}`).toBeDefined();
      // It imports the CMD's script or a module that script imports (one that does not start a server).
      const imported = /import\(\s*\\?['"]\.\/([^'"\\]+)\\?['"]\s*\)/.exec(warm?.args ?? '')?.[1] as string;
      const entry = cmd?.json?.[1] as string;
      expect([entry, ...(moduleGraph([entry]).imports[entry] ?? [])], warm?.args).toContain(imported);
      // Node names the cache folder after the uid (v24.x-x64-<hash>-<uid>): made as anyone else, it misses.
      expect(last(warmStage, 'USER')?.args).toBe(user?.args);
      // Entries are keyed by each file's path and checked against its content: the same /app, the same
      // stage the runtime is built on; and V8 flags that change code generation would reject it.
      expect(warmStage.from).toBe(finalStage.from);
      expect(all(warmStage, 'COPY')).toEqual([]);
      expect(all(warmStage, 'ENV')).toEqual([]);
      expect(
        all(finalStage, 'ENV')
          .flatMap(envPairs)
          .map(([k]) => k),
      ).not.toContain('NODE_OPTIONS');
    });

    it('when the container runs, then the cache is root-owned and read-only to the user, yet readable', () => {
      // COPY makes root the owner unless --chown says otherwise; Node writes its cache files 0600.
      expect(cacheCopy?.ins.flags.chown ?? '0:0').toMatch(/^(0|root)(:(0|root))?$/);
      const warm = all(warmStage, 'RUN')
        .map((r) => r.args)
        .join('\n');
      expect(cacheCopy?.ins.flags.chmod ?? warm).toMatch(/chmod -R [^&\n]*a\+rX|^0?[57]55$/);
      expect(Number(user?.args.split(':')[0])).not.toBe(0);
    });
  });

  it("when under load, then V8's young generation is capped (Node 24 grows it to 128 MiB: peak RSS 214 MB at 100 connections)", () => {
    const semiSpace = /--max-semi-space-size=(\d+)/.exec(runtimeEnv.get('NODE_OPTIONS') ?? '')?.[1];
    expect(semiSpace, 'ENV NODE_OPTIONS=--max-semi-space-size=<MiB>').toBeDefined();
    expect(Number(semiSpace)).toBeGreaterThan(0);
    expect(Number(semiSpace)).toBeLessThanOrEqual(16);
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
      'bench/bench.ts',
      'tsconfig.json',
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
      const pairs =
        ins.keyword === 'ENV'
          ? envPairs(ins)
          : [...ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(?:=("[^"]*"|\S+))?/g)].map((m) => [m[1], m[2]]);
      for (const [key, value] of pairs) {
        expect(key, `${ins.keyword} ${key} on line ${ins.line}`).not.toMatch(secretish);
        expect(SECRET_KEYS as readonly string[]).not.toContain(key);
        expect(value ?? '', `${ins.keyword} ${key} on line ${ins.line}`).not.toMatch(/:\/\/[^/\s]*:[^/\s]*@/);
      }
    }
    // What the runtime image sets is configuration the service knows, or Node's own.
    for (const key of runtimeEnv.keys())
      expect(
        KNOWN_ENV.has(key) || NODE_ENV_VARS.has(key),
        `ENV ${key} is neither a key src/config.ts knows nor Node's`,
      ).toBe(true);
  });

  it('when inspected, then it carries the OCI labels', () => {
    const labels = all(finalStage, 'LABEL')
      .map((l) => l.args)
      .join(' ');
    for (const key of [
      'title',
      'description',
      'source',
      'licenses',
      'version',
      'revision',
      'created',
      'base.name',
    ])
      expect(labels).toMatch(new RegExp(`org\\.opencontainers\\.image\\.${key.replace('.', '\\.')}=`));
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
