// compose.yaml's migrate and api services, their definitions as written, run by podman over the machine's Postgres and Redis.
//
// `docker compose config` (test/deploy) validates the file; this runs it. Each service's command,
// environment, user, read_only, tmpfs, cap_drop, security_opt, secrets (files under /run/secrets,
// read-only), healthcheck and stop_grace_period become podman flags (support/compose-run.ts). Changed,
// and only this:
// - the image: compose's `api-service-template:local` is the image this test builds from
//   docker/Dockerfile (the api service's `build:`), by buildah, on the stand-in base;
// - inside the database_url and redis_url secrets: the compose postgres and redis services (with
//   their passwords) are not run, so those URLs point at this machine's servers instead (host, port,
//   credentials; the database is a scratch one, dropped after);
// - the network: the containers share the host's (the servers listen on 127.0.0.1), so `ports:` do
//   not apply: PORT and METRICS_PORT are free ports, HOST is 127.0.0.1 (compose publishes on
//   127.0.0.1 only), and REDIS_KEY_PREFIX isolates this run on the shared Redis.
// depends_on is the order the test follows: migrate runs to exit 0, then api starts. Without systemd,
// podman does not schedule healthchecks itself: the test runs the compose healthcheck every second.
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dependsOn, parseCompose } from '../deploy/support/compose.ts';
import { createTestDatabase, deleteRedisPrefix, type TestDatabase } from '../helpers/app.ts';
import { TEST_PG_ADMIN_URL, TEST_REDIS_URL } from '../helpers/env.ts';
import { freePort } from '../helpers/process.ts';
import { composeRun } from './support/compose-run.ts';
import {
  get,
  readRepo,
  Session,
  seconds,
  skipNote,
  unavailableReason,
  waitFor,
} from './support/containers.ts';

const { compose } = parseCompose(readRepo('compose.yaml'), {});
const reason = unavailableReason();

describe.skipIf(reason !== null)(
  `compose.yaml's migrate and api services, run by podman${skipNote(reason)}`,
  { timeout: 90_000 },
  () => {
    let session: Session;
    let image: string;
    let db: TestDatabase;
    const redisPrefix = `imgcompose:${randomBytes(4).toString('hex')}:`;
    const figures: string[] = [];

    /** The secret files' contents, with compose's postgres and redis services replaced by this machine's servers. */
    function secretContent(name: string, content: string): string {
      if (!/^(postgres|redis):\/\//.test(content)) return content;
      const url = new URL(content);
      const local = new URL(url.hostname === 'postgres' ? TEST_PG_ADMIN_URL : TEST_REDIS_URL);
      if (url.hostname !== 'postgres' && url.hostname !== 'redis')
        throw new Error(`secret ${name} points at ${url.hostname}, not a compose service this test replaces`);
      local.pathname = url.hostname === 'postgres' ? `/${db.name}` : url.pathname;
      return local.toString();
    }

    beforeAll(async () => {
      session = new Session('compose');
      await session.ensureBase();
      const build = await session.build();
      image = build.image;
      figures.push(`image build ${seconds(build.ms)}`);
      db = await createTestDatabase({ migrated: false });
    }, 900_000);

    afterAll(async () => {
      await session?.close();
      await db?.drop();
      await deleteRedisPrefix(redisPrefix);
      if (figures.length > 0) console.info(`test/image/compose: ${figures.join('; ')}`);
    }, 120_000);

    async function runOf(service: 'migrate' | 'api') {
      const def = compose.services[service];
      if (!def) throw new Error(`compose.yaml has no ${service} service`);
      expect(def.image).toBe('api-service-template:local');
      const run = composeRun(compose, service, {
        dir: session.dir,
        secretContent,
        env: {
          HOST: '127.0.0.1',
          PORT: String(await freePort()),
          METRICS_PORT: String(await freePort()),
          REDIS_KEY_PREFIX: redisPrefix,
        },
      });
      return { ...run, name: session.containerName(service) };
    }

    it("when the migrate service runs as compose defines it, then it exits 0 with every migration applied (the api's depends_on condition)", async () => {
      expect(dependsOn(compose.services.api ?? {}).migrate).toBe('service_completed_successfully');
      const migrate = await runOf('migrate');
      const result = await session.podman(
        ['run', '--name', migrate.name, ...migrate.flags, image, ...migrate.command],
        {
          allowFail: true,
        },
      );
      expect(result.code, result.stderr).toBe(0);
      expect((await session.inspect(migrate.name)).ExitCode).toBe(0);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pgmigrations');
        const files = readdirSync(new URL('../../migrations/', import.meta.url)).filter((f) =>
          f.endsWith('.sql'),
        );
        expect(rows[0]?.n).toBe(files.length);
      } finally {
        await client.end();
      }
    });

    it('when the api service runs as compose defines it, then its compose healthcheck turns it healthy and it serves /ready', async () => {
      const api = await runOf('api');
      const def = compose.services.api;
      expect(api.healthcheck).toBeDefined();
      const started = performance.now();
      await session.podman(['run', '--detach', '--name', api.name, ...api.flags, image, ...api.command]);

      // The container carries compose's healthcheck, not only the image's.
      const { stdout } = await session.podman([
        'inspect',
        '--format',
        '{{json .Config.Healthcheck}}',
        api.name,
      ]);
      expect((JSON.parse(stdout) as { Test: string[] }).Test).toEqual(def?.healthcheck?.test);

      // Healthy within what compose allows: start_period, then `retries` failures `interval` apart.
      const healthy = await waitFor(
        'the compose healthcheck to pass',
        async () => {
          const state = await session.inspect(api.name);
          if (!state.Running)
            throw new Error(
              `api exited ${state.ExitCode}:\n${(await session.logs(api.name)).text.slice(-3000)}`,
            );
          const check = await session.podman(['healthcheck', 'run', api.name], { allowFail: true });
          return check.code === 0 ? state : undefined;
        },
        api.healthcheck?.deadlineMs ?? 0,
      );
      expect(healthy.Running).toBe(true);
      expect((await session.inspect(api.name)).Health?.Status).toBe('healthy');
      figures.push(`api healthy ${seconds(performance.now() - started)} after start`);

      const ready = await get(`http://127.0.0.1:${api.env.PORT}/ready`);
      expect(ready.status, ready.body).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ checks: { database: 'ok', redis: 'ok' } });

      // stop_grace_period: `docker compose stop` lets it drain and exit 0.
      await session.podman(['stop', '--time', String(api.stopTimeoutSeconds), api.name], {
        timeoutMs: 60_000,
      });
      expect((await session.inspect(api.name)).ExitCode).toBe(0);
    });
  },
);
