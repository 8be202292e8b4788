// The production image for real: docker/Dockerfile built by buildah, run by podman as k8s/base configures it, over the machine's Postgres and Redis.
//
// The FROM image is a stand-in assembled by scripts/image-base.sh (the official one cannot be
// pulled here): the same Debian bookworm packages, the same Node.js binary and npm, the same `node`
// user; no corepack, no yarn, no docker-entrypoint.sh (docs/deployment.md lists every difference).
// The container shares the host's network (to reach 127.0.0.1:5432 and :6379), so HOST is
// 127.0.0.1 and PORT/METRICS_PORT are free ports; REDIS_KEY_PREFIX isolates this run. Everything
// else comes from the manifests: k8s/base/config.env, the secret files, user, read-only root, /tmp.
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createTestDatabase, deleteRedisPrefix, type TestDatabase } from '../helpers/app.ts';
import { TEST_REDIS_URL } from '../helpers/env.ts';
import { freePort } from '../helpers/process.ts';
import {
  get,
  readRepo,
  Session,
  seconds,
  skipNote,
  unavailableReason,
  waitFor,
} from './support/containers.ts';
import { type PodmanRun, podmanRunFor } from './support/k8s.ts';

/**
 * Measured 2026-12-03 with the stand-in base (276 MB, of which Node 121 MB and npm 19 MB): the image
 * is 459 MB, 183 MB of it the Dockerfile's own layers (production node_modules 121 MB, tini, src,
 * migrations, the compile cache 3 MB). Budgets ~15 % above.
 */
const IMAGE_BUDGET_MB = 530;
const OWN_LAYERS_BUDGET_MB = 210;

/** Never in the image: dev tooling and type declarations (the deps stage deletes the @types that --omit=dev keeps). */
const DEV_ONLY = [
  /^typescript$/,
  /^vitest$/,
  /^vite$/,
  /^esbuild$/,
  /^@esbuild\//,
  /^@types\//,
  /^@biomejs\//,
];

const reason = unavailableReason();

describe.skipIf(reason !== null)(
  `the image, built by buildah and run by podman${skipNote(reason)}`,
  { timeout: 90_000 },
  () => {
    let session: Session;
    let image: string;
    let db: TestDatabase;
    let secrets: string;
    const redisPrefix = `imgtest:${randomBytes(4).toString('hex')}:`;
    const figures: string[] = [];

    beforeAll(async () => {
      session = new Session('k8s');
      const base = await session.ensureBase();
      figures.push(`base: ${base.line} (${seconds(base.ms)})`);
      const build = await session.build();
      image = build.image;
      figures.push(`image build: ${seconds(build.ms)} (${build.args.join(' ')})`);
      // Empty, not cloned from the migrated template: the migration Job's command must do the work.
      db = await createTestDatabase({ migrated: false });
      secrets = session.secretsDir('api-secrets', {
        DATABASE_URL: db.url,
        REDIS_URL: TEST_REDIS_URL,
        JWT_SECRET: randomBytes(48).toString('base64url'),
      });
    }, 900_000);

    afterAll(async () => {
      await session?.close();
      await db?.drop();
      await deleteRedisPrefix(redisPrefix);
      if (figures.length > 0) console.info(`test/image: ${figures.join('; ')}`);
    }, 120_000);

    /** podman run flags for a manifest, plus the host-network overrides described at the top. */
    async function runFlags(manifest: string): Promise<PodmanRun & { port: number; metricsPort: number }> {
      const run = podmanRunFor(manifest, { 'api-secrets': secrets });
      const [port, metricsPort] = [await freePort(), await freePort()];
      run.flags.push(
        '--network',
        'host',
        ...[
          'HOST=127.0.0.1',
          `PORT=${port}`,
          `METRICS_PORT=${metricsPort}`,
          `REDIS_KEY_PREFIX=${redisPrefix}`,
        ].flatMap((e) => ['--env', e]),
      );
      return { ...run, port, metricsPort };
    }

    describe('the migration Job', () => {
      it('when the command that compose and the k8s Job both run starts in the image, then it applies every migration and exits 0', async () => {
        const job = await runFlags('k8s/base/migrate-job.yaml');
        const compose = parse(readRepo('compose.yaml')) as { services: { migrate: { command: string[] } } };
        expect(job.args).toEqual(compose.services.migrate.command);
        const name = session.containerName('migrate');
        const result = await session.podman(['run', '--name', name, ...job.flags, image, ...job.args], {
          allowFail: true,
          timeoutMs: 120_000,
        });
        expect(result.code, result.stderr).toBe(0);
        expect((await session.inspect(name)).ExitCode).toBe(0);

        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        try {
          const { rows } = await client.query<{ name: string }>(
            'SELECT name FROM pgmigrations ORDER BY run_on, id',
          );
          const files = readdirSync(new URL('../../migrations/', import.meta.url))
            .filter((f) => f.endsWith('.sql'))
            .map((f) => f.replace(/\.sql$/, ''))
            .sort();
          expect(rows.map((r) => r.name)).toEqual(files);
        } finally {
          await client.end();
        }
      });
    });

    describe('the server, as the Deployment runs it', () => {
      let server: PodmanRun & { port: number; metricsPort: number };
      let name: string;
      let base: string;
      let apiKey: string;
      let ready: Record<string, unknown>;

      /** The node process's pid inside the container (tini is PID 1). */
      async function nodePid(): Promise<string> {
        const { stdout } = await session.podman(['top', name, 'pid', 'args']);
        const line = stdout
          .split('\n')
          .find((l) => /\bnode src\/main\.ts\s*$/.test(l) && !l.includes('tini'));
        if (!line) throw new Error(`no node process in\n${stdout}`);
        return line.trim().split(/\s+/)[0] as string;
      }
      const exec = (args: string[], options: { env?: string[] } = {}) =>
        session.podman(['exec', ...(options.env ?? []).flatMap((e) => ['--env', e]), name, ...args], {
          allowFail: true,
        });

      beforeAll(async () => {
        server = await runFlags('k8s/base/deployment.yaml');
        name = session.containerName('api');
        base = `http://127.0.0.1:${server.port}`;
        await session.podman(['run', '--detach', '--name', name, ...server.flags, image, ...server.args]);
        ready = await waitFor(
          'the ready log line',
          async () => {
            const state = await session.inspect(name);
            if (!state.Running)
              throw new Error(`the container exited ${state.ExitCode}:\n${(await session.logs(name)).text}`);
            return (await session.logs(name)).lines.find((l) => l.msg === 'ready');
          },
          30_000,
        );
      }, 60_000);

      it('when it has started, then /health and /ready answer 200', async () => {
        const health = await get(`${base}/health`);
        expect(health.status).toBe(200);
        expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', version: '0.0.0-ci' });
        const readiness = await get(`${base}/ready`);
        expect(readiness.status, readiness.body).toBe(200);
        expect(JSON.parse(readiness.body)).toMatchObject({ checks: { database: 'ok', redis: 'ok' } });
      });

      it('when an API key is made with the image CLI (the command docs/deployment.md gives), then it works on /v1/me', async () => {
        const made = await exec([
          'node',
          'src/cli/auth.ts',
          'create-api-key',
          '--name',
          'image-test',
          '--scopes',
          'admin',
        ]);
        expect(made.code, made.stderr).toBe(0);
        apiKey = made.stdout.trim();
        const me = await get(`${base}/v1/me`, { 'x-api-key': apiKey });
        expect(me.status, me.body).toBe(200);
        expect(JSON.parse(me.body)).toMatchObject({
          subject: 'image-test',
          kind: 'api_key',
          scopes: ['admin'],
        });
        expect((await get(`${base}/v1/me`, { 'x-api-key': `${apiKey}x` })).status).toBe(401);
      });

      it('when the process is inspected, then node runs as uid and gid 1000 under tini', async () => {
        const { stdout: config } = await session.podman([
          'image',
          'inspect',
          '--format',
          '{{.Config.User}}',
          image,
        ]);
        expect(config.trim()).toBe('1000:1000');
        const status = await exec(['cat', `/proc/${await nodePid()}/status`]);
        expect(status.stdout).toMatch(/^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
        expect(status.stdout).toMatch(/^Gid:\s+1000\s+1000\s+1000\s+1000$/m);
        expect((await exec(['cat', '/proc/1/cmdline'])).stdout.split('\0')[0]).toBe('/usr/bin/tini');
      });

      it('when the app user writes to /app, then it cannot (read-only root, and root-owned files even without it)', async () => {
        const inRunning = await exec(['sh', '-c', 'touch /app/probe || touch /app/src/probe.ts']);
        expect(inRunning.code).not.toBe(0);
        expect(inRunning.stderr).toMatch(/Read-only file system/);
        // /tmp (the emptyDir) is writable: the same command can write where the manifests allow it.
        expect((await exec(['sh', '-c', 'touch /tmp/probe && rm /tmp/probe'])).code).toBe(0);
        // Without --read-only, the image's own ownership still refuses uid 1000.
        const writable = await session.podman(
          [
            'run',
            '--rm',
            '--user',
            '1000:1000',
            image,
            'sh',
            '-c',
            'touch /app/probe; touch /app/src/probe.ts; touch /app/node_modules/probe',
          ],
          { allowFail: true },
        );
        expect(writable.stderr.match(/Permission denied/g)).toHaveLength(3);
      });

      it("when the image's HEALTHCHECK runs, then it passes while /health answers and fails while it does not", async () => {
        const { stdout } = await session.podman([
          'image',
          'inspect',
          '--format',
          '{{json .Config.Healthcheck}}',
          image,
        ]);
        const healthcheck = JSON.parse(stdout) as { Test: string[] } | null;
        expect(healthcheck?.Test.slice(0, 3)).toEqual(['CMD', 'node', '-e']);

        const passing = await session.podman(['healthcheck', 'run', name], { allowFail: true });
        expect(passing.code, `${passing.stdout}${passing.stderr}`).toBe(0);
        expect((await session.inspect(name)).Health?.Status).toBe('healthy');
        // Frozen, the server accepts the connection in the kernel but never answers: the check's own
        // 2.5 s timeout fails it, as it would a hung event loop.
        const pid = await nodePid(); // no procps in the image: the shell's kill builtin
        expect((await exec(['sh', '-c', `kill -STOP ${pid}`])).code).toBe(0);
        try {
          const frozen = await session.podman(['healthcheck', 'run', name], {
            allowFail: true,
            timeoutMs: 15_000,
          });
          // (Within the 20 s start period podman does not count the failure towards unhealthy yet.)
          expect(frozen.code, `${frozen.stdout}${frozen.stderr}`).toBe(1);
          expect(frozen.stdout.trim()).toBe('unhealthy');
        } finally {
          await exec(['sh', '-c', `kill -CONT ${pid}`]);
        }
        expect((await session.podman(['healthcheck', 'run', name], { allowFail: true })).code).toBe(0);
      });

      it('when the server has loaded, then it uses the compile cache shipped in the image, read-only', async () => {
        const { stdout } = await session.podman([
          'image',
          'inspect',
          '--format',
          '{{json .Config.Env}}',
          image,
        ]);
        const cacheRoot = (JSON.parse(stdout) as string[])
          .find((e) => e.startsWith('NODE_COMPILE_CACHE='))
          ?.split('=')[1];
        expect(cacheRoot).toBe('/app/.cache/node-compile-cache');
        // src/main.ts reports module.enableCompileCache()'s directory: Node's version and uid 1000.
        const dir = ready.compileCacheDir as string;
        const nodeVersion = /^FROM node:(\d+\.\d+\.\d+)-/m.exec(readRepo('docker/Dockerfile'))?.[1] as string;
        expect(dir).toMatch(
          new RegExp(`^${cacheRoot}/v${nodeVersion.replaceAll('.', '\\.')}-x64-[0-9a-f]+-1000$`),
        );
        const list = ['find', dir, '-type', 'f', '-printf', '%P %s %T@ %m %u\\n'];
        const before = (await exec(list)).stdout.trim().split('\n');
        expect(before.length).toBeGreaterThan(100);
        expect(before.every((l) => l.endsWith(' 444 root'))).toBe(true);

        // The same load in the running container, with Node's compile cache debug output on: entries are
        // accepted, none is written.
        const load = await exec(['node', '--input-type=module', '-e', "await import('./src/server.ts')"], {
          env: ['NODE_DEBUG_NATIVE=COMPILE_CACHE'],
        });
        expect(load.code, load.stderr.slice(-2000)).toBe(0);
        expect(load.stderr).toMatch(/V8 code cache for ESM file:\/\/\/app\/src\/server\.ts was accepted/);
        expect(load.stderr).toMatch(
          /retrieving transpile cache for StrippedTypeScript file:\/\/\/app\/src\/app\.ts\.\.\.success/,
        );
        expect(load.stderr.match(/was accepted/g)?.length ?? 0).toBeGreaterThan(100);
        expect(load.stderr).not.toMatch(/Creating temporary file/);
        expect((await exec(list)).stdout.trim().split('\n')).toEqual(before);
      });

      it('when node_modules is listed, then no dev dependency or type declaration is in the image', async () => {
        const walk = `const fs=require('fs'),p=require('path'),out=[];
        const add=(d)=>{out.push(p.relative('/app',d));const nm=p.join(d,'node_modules');if(fs.existsSync(nm))walk(nm)};
        const walk=(d)=>{for(const e of fs.readdirSync(d,{withFileTypes:true})){if(!e.isDirectory()||e.name==='.bin')continue;
          if(e.name.startsWith('@'))for(const s of fs.readdirSync(p.join(d,e.name)))add(p.join(d,e.name,s));else add(p.join(d,e.name))}};
        walk('/app/node_modules');console.log(JSON.stringify(out))`;
        const listed = await exec(['node', '-e', walk]);
        const paths = JSON.parse(listed.stdout) as string[];
        expect(paths).toContain('node_modules/fastify');
        const packageName = (path: string) => path.split('node_modules/').at(-1) as string;
        expect(paths.filter((path) => DEV_ONLY.some((re) => re.test(packageName(path))))).toEqual([]);

        // And by the lockfile: nothing that npm marks dev or devOptional.
        const lock = JSON.parse(readRepo('package-lock.json')) as {
          packages: Record<string, { dev?: boolean; devOptional?: boolean }>;
        };
        const devOnly = new Set(
          Object.entries(lock.packages)
            .filter(([, p]) => p.dev || p.devOptional)
            .map(([path]) => path),
        );
        expect(devOnly.has('node_modules/typescript')).toBe(true);
        expect(paths.filter((path) => devOnly.has(path))).toEqual([]);
      });

      it('when the image size is measured, then it stays within its budget', async () => {
        const size = async (ref: string) =>
          Number((await session.podman(['image', 'inspect', '--format', '{{.Size}}', ref])).stdout.trim()) /
          1e6;
        const { stdout: from } = await session.podman([
          'image',
          'inspect',
          '--format',
          '{{index .Labels "org.opencontainers.image.base.name"}}',
          image,
        ]);
        const total = await size(image);
        const own = total - (await size(from.trim()));
        figures.push(
          `image size: ${total.toFixed(0)} MB (budget ${IMAGE_BUDGET_MB}), own layers ${own.toFixed(0)} MB (budget ${OWN_LAYERS_BUDGET_MB})`,
        );
        expect(total).toBeLessThanOrEqual(IMAGE_BUDGET_MB);
        expect(own).toBeLessThanOrEqual(OWN_LAYERS_BUDGET_MB);
      });

      it('when podman stop sends SIGTERM under load, then every request succeeds, /ready turns 503 and the container exits 0', async () => {
        // Eight clients on /health (/v1/me would meet the per-key rate limit, 100 a minute): SIGTERM
        // arrives mid-load, then each sends 20 more once /ready has turned 503, inside SHUTDOWN_DELAY_MS
        // (config.env: 5000), before the listener closes. Bounded: 20 requests after the drain was seen.
        const deadline = performance.now() + 15_000;
        let done = 0;
        let draining = false;
        let afterDrain = 0;
        const failures: string[] = [];
        const client = async () => {
          for (let mine = 0; mine < 20; ) {
            if (performance.now() > deadline) throw new Error(`no drain within 15 s (${done} requests)`);
            const seenDraining = draining;
            const res = await get(`${base}/health`);
            if (res.status !== 200) failures.push(`${res.status} ${res.body.slice(0, 200)}`);
            done++;
            if (seenDraining) {
              mine++;
              afterDrain++;
            }
          }
        };
        const load = Promise.all(Array.from({ length: 8 }, client));
        await waitFor('the first responses', async () => (done >= 40 ? true : undefined), 10_000);
        const started = performance.now();
        const stop = session.podman(['stop', '--time', String(server.stopTimeoutSeconds), name], {
          timeoutMs: 60_000,
        });
        await waitFor(
          '/ready to turn 503',
          async () => ((await get(`${base}/ready`)).status === 503 ? true : undefined),
          10_000,
        );
        draining = true;
        await load;
        await stop;
        const stoppedMs = performance.now() - started;

        expect(failures).toEqual([]);
        expect(afterDrain).toBe(8 * 20);
        const state = await session.inspect(name);
        expect(state.ExitCode).toBe(0);
        expect(stoppedMs).toBeLessThan(server.stopTimeoutSeconds * 1000);
        const messages = (await session.logs(name)).lines.map((l) => l.msg);
        expect(messages).toContain('shutdown: readiness now failing');
        expect(messages.at(-1)).toBe('shutdown: complete');
        figures.push(
          `stop under load: ${done} requests, ${afterDrain} while draining, 0 failed, exit 0 in ${seconds(stoppedMs)}`,
        );
      });
    });
  },
);
