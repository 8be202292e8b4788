// Cross-references in every rendered overlay: selectors and pod labels, ports and probes (against the
// real app), the environment against src/config.ts, the Secret's keys and values, the shutdown budget.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../src/plugins/metrics.ts';
import { buildTestApp, type TestApp, type TestDatabase } from '../helpers/app.ts';
import { databaseUrl, TEST_PG_ADMIN_URL } from '../helpers/env.ts';
import {
  id,
  type K8sObject,
  KUBECTL_MISSING,
  kubectlAvailable,
  OVERLAYS,
  ofKind,
  one,
  type PodOwner,
  podOwners,
  render,
  selects,
} from './support/k8s.ts';
import {
  type Config,
  configProblems,
  DEPLOY_ENV,
  exists,
  isPlaceholderSecret,
  loadConfig,
  otelProblems,
  readText,
  readYaml,
  SECRET_FILE_KEYS,
  STRONG_TEST_SECRET,
  withSecretFiles,
} from './support/repo.ts';

if (!kubectlAvailable) console.warn(`test/deploy/k8s-references.test.ts skipped: ${KUBECTL_MISSING}`);

// biome-ignore lint/suspicious/noExplicitAny: rendered containers are walked generically.
type Container = any;

const labelsOf = (owner: PodOwner) => owner.template.metadata.labels as Record<string, string>;
const containers = (owner: PodOwner): Container[] => [
  ...(owner.template.spec.initContainers ?? []),
  ...owner.template.spec.containers,
];

/** Pods running the API image: the server Deployment and the migration Job. */
function appPods(objects: K8sObject[]): PodOwner[] {
  return podOwners(objects).filter((p) => labelsOf(p)['app.kubernetes.io/name'] === 'api');
}

function server(objects: K8sObject[]): PodOwner {
  return podOwners(objects).find(
    (p) => p.owner.kind === 'Deployment' && p.owner.metadata.name === 'api',
  ) as PodOwner;
}

function migration(objects: K8sObject[]): PodOwner {
  return podOwners(objects).find(
    (p) => p.owner.kind === 'Job' && p.owner.metadata.name === 'api-migrate',
  ) as PodOwner;
}

/** The containerPort a probe/target port (name or number) means in a container. */
function containerPort(c: Container, port: string | number): number | undefined {
  if (typeof port === 'number')
    return c.ports?.some((p: { containerPort: number }) => p.containerPort === port) ? port : undefined;
  return c.ports?.find((p: { name?: string }) => p.name === port)?.containerPort;
}

/** Keys a Secret provides, whether written here or created by an ExternalSecret. */
function secretKeys(objects: K8sObject[], name: string): string[] {
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === name);
  if (secret) return [...Object.keys(secret.stringData ?? {}), ...Object.keys(secret.data ?? {})];
  const external = ofKind(objects, 'ExternalSecret').find(
    (o) => (o.spec.target?.name ?? o.metadata.name) === name,
  );
  if (external) {
    expect(external.spec.dataFrom, `${id(external)}: dataFrom keys cannot be checked`).toBeUndefined();
    return external.spec.data.map((d: { secretKey: string }) => d.secretKey);
  }
  return [];
}

function secretValues(objects: K8sObject[], name: string): Record<string, string> | undefined {
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === name);
  if (secret === undefined) return undefined;
  const decoded = Object.entries(secret.data ?? {}).map(([k, v]) => [
    k,
    Buffer.from(String(v), 'base64').toString(),
  ]);
  return { ...Object.fromEntries(decoded), ...(secret.stringData ?? {}) };
}

/** The container's environment: envFrom ConfigMaps, then env values (as the kubelet merges them). */
function containerEnv(objects: K8sObject[], c: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    expect(from.secretRef, 'secrets are files, not envFrom').toBeUndefined();
    const cm = one(objects, 'ConfigMap', from.configMapRef.name);
    Object.assign(env, cm.data);
  }
  for (const e of c.env ?? []) {
    expect(e.valueFrom?.secretKeyRef, `${e.name}: secrets are files, not env`).toBeUndefined();
    env[e.name] = e.value ?? '';
  }
  return env;
}

/** Which Secret key backs a file path in the container (through a secret volume mount). */
function secretFileSource(
  owner: PodOwner,
  c: Container,
  path: string,
): { secret: string; key: string } | undefined {
  for (const mount of c.volumeMounts ?? []) {
    const dir = String(mount.mountPath).replace(/\/$/, '');
    if (!path.startsWith(`${dir}/`)) continue;
    const volume = owner.template.spec.volumes?.find((v: { name: string }) => v.name === mount.name);
    if (volume?.secret === undefined) continue;
    const rel = path.slice(dir.length + 1);
    const item = volume.secret.items?.find((i: { path: string }) => i.path === rel);
    if (volume.secret.items !== undefined && item === undefined) return undefined;
    return { secret: volume.secret.secretName, key: item?.key ?? rel };
  }
  return undefined;
}

/**
 * The effective configuration of an API container: its environment with every *_FILE written from the
 * Secret it is mounted from. Values production refuses (the placeholders) are swapped for strong test
 * values only when `swapPlaceholders`; keys provided by an ExternalSecret get test values.
 */
function appEnv(objects: K8sObject[], owner: PodOwner, c: Container, swapPlaceholders: boolean) {
  const env = containerEnv(objects, c);
  return withSecretFiles(env, (fileKey, path) => {
    const source = secretFileSource(owner, c, path);
    expect(source, `${fileKey}=${path} is not inside a mounted Secret`).toBeDefined();
    const { secret, key } = source as { secret: string; key: string };
    expect(secretKeys(objects, secret), `${fileKey}: Secret ${secret} has no key ${key}`).toContain(key);
    const values = secretValues(objects, secret);
    const value =
      values?.[key] ??
      {
        DATABASE_URL: 'postgres://api:test@db.example.internal:5432/api',
        MIGRATE_DATABASE_URL: 'postgres://api:test@db.example.internal:5432/api',
        REDIS_URL: 'rediss://:test@cache.example.internal:6379/0',
        REDIS_CLUSTER_NODES:
          'rediss://:test@cache-0.example.internal:6379,rediss://:test@cache-1.example.internal:6379',
      }[key] ??
      STRONG_TEST_SECRET;
    return swapPlaceholders && isPlaceholderSecret(value) ? STRONG_TEST_SECRET : value;
  });
}

describe.skipIf(!kubectlAvailable)('cross-references in the rendered overlays (needs kubectl)', () => {
  describe.each(OVERLAYS)('k8s/%s', (dir) => {
    const objects = kubectlAvailable ? render(dir) : [];
    const pods = podOwners(objects);
    const deployment = () => server(objects);
    const job = () => migration(objects);
    const apiContainer = () => deployment().template.spec.containers.find((c: Container) => c.name === 'api');

    it('when the Deployment, Service, PDB, HPA and topology spread select pods, then they select the server pods and only them', () => {
      const d = deployment();
      expect(selects(d.owner.spec.selector, labelsOf(d))).toBe(true);
      const service = one(objects, 'Service', 'api');
      const pdb = one(objects, 'PodDisruptionBudget', 'api');
      for (const [what, selector] of [
        ['Service', { matchLabels: service.spec.selector }],
        ['PodDisruptionBudget', pdb.spec.selector],
        ...d.template.spec.topologySpreadConstraints.map((t: { labelSelector: unknown }) => [
          'topologySpreadConstraint',
          t.labelSelector,
        ]),
      ] as [string, { matchLabels: Record<string, string> }][]) {
        expect(selects(selector, labelsOf(d)), `${what} misses the server pods`).toBe(true);
        for (const other of pods.filter((p) => p.owner !== d.owner))
          expect(selects(selector, labelsOf(other)), `${what} also selects ${id(other.owner)}`).toBe(false);
      }
      for (const hpa of ofKind(objects, 'HorizontalPodAutoscaler'))
        expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'api' });
    });

    it('when NetworkPolicies select pods, then every pod is covered by the default deny and each named port exists on the selected pods', () => {
      const policies = ofKind(objects, 'NetworkPolicy');
      const deny = one(objects, 'NetworkPolicy', 'default-deny');
      expect(deny.spec.podSelector).toEqual({});
      expect(
        selects(one(objects, 'NetworkPolicy', 'api-server').spec.podSelector, labelsOf(deployment())),
      ).toBe(true);
      expect(selects(one(objects, 'NetworkPolicy', 'api-migrate').spec.podSelector, labelsOf(job()))).toBe(
        true,
      );
      for (const policy of policies) {
        const selected = pods.filter((p) => policy === deny || selects(policy.spec.podSelector, labelsOf(p)));
        expect(selected.length, `${id(policy)} selects no pod`).toBeGreaterThan(0);
        for (const rule of policy.spec.ingress ?? [])
          for (const port of rule.ports ?? [])
            for (const p of selected)
              expect(
                containers(p).some((c) => containerPort(c, port.port) !== undefined),
                `${id(policy)}: port ${port.port} is not a container port of ${id(p.owner)}`,
              ).toBe(true);
        // Peers that name pods must match some pod here (a typo in a label silently blocks traffic).
        for (const rule of policy.spec.ingress ?? [])
          for (const peer of rule.from ?? [])
            if (peer.podSelector !== undefined && peer.namespaceSelector === undefined)
              expect(
                pods.some((p) => selects(peer.podSelector, labelsOf(p))),
                `${id(policy)}: no pod matches ${JSON.stringify(peer.podSelector)}`,
              ).toBe(true);
      }
    });

    it('when traffic is routed, then Service target ports, the Ingress backend and the ServiceMonitor endpoint resolve', () => {
      const service = one(objects, 'Service', 'api');
      const c = apiContainer();
      for (const port of service.spec.ports)
        expect(containerPort(c, port.targetPort), `Service port ${port.name}`).toBeDefined();
      const ingress = one(objects, 'Ingress', 'api');
      for (const rule of ingress.spec.rules)
        for (const path of rule.http.paths) {
          const backend = path.backend.service;
          expect(backend.name).toBe('api');
          expect(service.spec.ports.map((p: { name: string }) => p.name)).toContain(backend.port.name);
        }
      for (const monitor of ofKind(objects, 'ServiceMonitor')) {
        expect(selects(monitor.spec.selector, service.metadata.labels)).toBe(true);
        for (const endpoint of monitor.spec.endpoints) {
          const port = service.spec.ports.find((p: { name: string }) => p.name === endpoint.port);
          expect(port, `ServiceMonitor port ${endpoint.port}`).toBeDefined();
          expect(containerPort(c, port.targetPort)).toBe(
            loadConfig(appEnv(objects, deployment(), c, true)).METRICS_PORT,
          );
          expect(endpoint.path).toBe('/metrics');
        }
      }
    });

    it('when the API containers start, then every variable they get is a key src/config.ts knows (or a standard OTEL_* one)', () => {
      // OTEL_* keys are read by the OpenTelemetry SDK, not src/config.ts: DEPLOY_ENV names each one
      // (test/deploy/support/repo.ts), so a misspelt OTEL_ key still fails here.
      for (const p of appPods(objects))
        for (const c of containers(p)) {
          const env = containerEnv(objects, c);
          for (const key of Object.keys(env))
            expect(DEPLOY_ENV.has(key), `${id(p.owner)}: ${key} is not a key src/config.ts knows`).toBe(true);
          expect(otelProblems(env), id(p.owner)).toEqual([]);
        }
      for (const cm of ofKind(objects, 'ConfigMap'))
        for (const key of Object.keys(cm.data ?? {}))
          expect(
            SECRET_FILE_KEYS.has(key) || !/SECRET|PASSWORD|TOKEN|_URL$/.test(key),
            `${key} in a ConfigMap`,
          ).toBe(true);
    });

    it('when traces are exported, then the OTLP endpoint is an in-cluster Service in a namespace the api-server NetworkPolicy opens on that port', () => {
      const env = containerEnv(objects, apiContainer());
      const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT;
      // Sampling is configured wherever an endpoint may be set: parent-based, at most 10 % of new traces.
      expect(env.OTEL_TRACES_SAMPLER).toBe('parentbased_traceidratio');
      if (dir === 'overlays/production') {
        expect(endpoint, 'production exports traces').toBeDefined();
        expect(Number(env.OTEL_TRACES_SAMPLER_ARG)).toBeLessThanOrEqual(0.1);
        expect(env.OTEL_RESOURCE_ATTRIBUTES).toContain('deployment.environment.name=production');
      } else {
        // The base and the development overlay have no collector to send to: tracing stays off.
        expect(endpoint).toBeUndefined();
        return;
      }
      const url = new URL(endpoint as string);
      const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(url.hostname);
      expect(m, `${url.hostname} is not <service>.<namespace>.svc`).not.toBeNull();
      const namespace = m?.[2];
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const policy = one(objects, 'NetworkPolicy', 'api-server');
      const open = policy.spec.egress.some(
        (rule: {
          to?: { namespaceSelector?: { matchLabels?: Record<string, string> } }[];
          ports?: { port: number }[];
        }) =>
          (rule.to ?? []).some(
            (peer) => peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === namespace,
          ) && (rule.ports ?? []).some((p) => p.port === port),
      );
      expect(open, `api-server NetworkPolicy does not let traces out to ${namespace}:${port}`).toBe(true);
    });

    it('when the API containers start with their Secret mounted, then the configuration loads (every required key set)', () => {
      for (const p of appPods(objects))
        for (const c of containers(p)) {
          const env = appEnv(objects, p, c, true);
          expect(configProblems(env), id(p.owner)).toEqual([]);
          const config = loadConfig(env);
          expect(config.LOG_PRETTY, `${id(p.owner)}: pino-pretty is not in the image`).toBe(false);
          expect(config.MIGRATE_ON_START, `${id(p.owner)}: the Job migrates`).toBe(false);
          expect(config.DATABASE_URL).toBeDefined();
          expect(config.JWT_SECRET).toBeDefined();
          // Through a transaction pooler the Job migrates over a direct URL (src/cli/migrate.ts refuses otherwise).
          if (config.DATABASE_POOL_MODE === 'transaction' && p.owner.kind === 'Job')
            expect(config.MIGRATE_DATABASE_URL, `${id(p.owner)}: MIGRATE_DATABASE_URL`).toBeDefined();
        }
    });

    it('when the API containers get their Redis, then each reads exactly one of REDIS_URL_FILE and REDIS_CLUSTER_NODES_FILE, from a key the Secret has', () => {
      // Production runs on a Redis Cluster (k8s/components/redis-cluster); the base and development on one Redis.
      const expected = dir === 'overlays/production' ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
      const other = expected === 'REDIS_URL' ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
      const keys = secretKeys(objects, 'api-secrets');
      expect(keys).toContain(expected);
      expect(keys, `api-secrets still provides ${other}`).not.toContain(other);
      for (const p of appPods(objects))
        for (const c of containers(p)) {
          const env = containerEnv(objects, c);
          expect(env[`${expected}_FILE`], id(p.owner)).toBe(`/run/secrets/api/${expected}`);
          expect(Object.keys(env), id(p.owner)).not.toContain(`${other}_FILE`);
          expect(Object.keys(env), id(p.owner)).not.toContain(other);
          const config = loadConfig(appEnv(objects, p, c, true));
          expect(config[expected], id(p.owner)).toBeDefined();
          expect(config[other], id(p.owner)).toBeUndefined();
        }
    });

    it('when the Secret is read, then its values are placeholders or public dev-only values that production refuses', () => {
      const values = secretValues(objects, 'api-secrets');
      if (dir === 'overlays/production') {
        expect(values, 'production must not carry secret values').toBeUndefined();
        return;
      }
      expect(values).toBeDefined();
      for (const [key, value] of Object.entries(values as Record<string, string>))
        expect(
          isPlaceholderSecret(value) || /change-me|dev-only/.test(value),
          `${key} does not look like a placeholder`,
        ).toBe(true);
      // As written, the production guardrails refuse it (the JWT secret is a known placeholder).
      const c = apiContainer();
      const asIs = { ...appEnv(objects, deployment(), c, false), NODE_ENV: 'production' };
      expect(configProblems(asIs)).toContain('JWT_SECRET is a known placeholder value');
    });

    it('when SIGTERM arrives, then terminationGracePeriodSeconds outlasts preStop + SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS', () => {
      const d = deployment();
      const c = apiContainer();
      const config = loadConfig(appEnv(objects, d, c, true));
      const preStop = c.lifecycle?.preStop;
      const sleep =
        preStop?.sleep?.seconds ?? Number(/^sleep (\d+)$/.exec(preStop?.exec?.command?.join(' '))?.[1]);
      expect(sleep, 'a preStop wait lets endpoints drop the pod before SIGTERM').toBeGreaterThan(0);
      const budgetMs = sleep * 1000 + config.SHUTDOWN_DELAY_MS + config.SHUTDOWN_TIMEOUT_MS;
      expect(d.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(budgetMs);
      expect(config.SHUTDOWN_DELAY_MS).toBeGreaterThan(0);
    });

    it('when migrations run, then the Job uses the server image, configuration and secrets, runs the shipped CLI and keeps tini', () => {
      const d = apiContainer();
      const m = job().template.spec.containers[0];
      expect(m.image).toBe(d.image);
      expect(m.command, 'command would replace the image entrypoint (tini)').toBeUndefined();
      expect(m.args).toEqual(['node', 'src/cli/migrate.ts', 'up']);
      expect(exists('src/cli/migrate.ts')).toBe(true);
      expect(m.envFrom).toEqual(d.envFrom);
      expect(job().template.spec.restartPolicy).toBe('Never');
      expect(job().owner.spec.backoffLimit).toBeLessThanOrEqual(3);
      // Argo CD: the Job's wave completes before the Deployment's.
      const wave = (o: K8sObject) => Number(o.metadata.annotations?.['argocd.argoproj.io/sync-wave'] ?? 0);
      expect(wave(job().owner)).toBeLessThan(wave(deployment().owner));
      for (const p of appPods(objects))
        expect(
          containers(p).every((c) => c.command === undefined),
          id(p.owner),
        ).toBe(true);
    });

    it('when images are pulled, then every one has an explicit version tag', () => {
      for (const p of pods)
        for (const c of containers(p)) {
          expect(c.image, `${id(p.owner)}/${c.name}`).toMatch(/^[a-z0-9./-]+:[A-Za-z0-9._-]+$/);
          expect(c.image).not.toMatch(/:latest$/);
        }
    });

    it('when the autoscaler and the disruption budget act, then their bounds fit the Deployment', () => {
      const d = deployment();
      const replicas = d.owner.spec.replicas as number;
      for (const hpa of ofKind(objects, 'HorizontalPodAutoscaler')) {
        expect(hpa.spec.minReplicas).toBeLessThanOrEqual(replicas);
        expect(hpa.spec.maxReplicas).toBeGreaterThanOrEqual(replicas);
        const resources = hpa.spec.metrics.map((m: { resource: { name: string } }) => m.resource.name).sort();
        expect(resources).toEqual(['cpu', 'memory']);
        // Utilisation targets are percentages of the requests: every container must request both.
        for (const c of containers(d)) {
          expect(c.resources?.requests?.cpu, c.name).toBeDefined();
          expect(c.resources?.requests?.memory, c.name).toBeDefined();
        }
      }
      const pdb = one(objects, 'PodDisruptionBudget', 'api');
      if (pdb.spec.maxUnavailable !== undefined) expect(pdb.spec.maxUnavailable).toBeGreaterThanOrEqual(1);
      else expect(pdb.spec.minAvailable).toBeLessThan(replicas);
    });

    it('when the PrometheusRule is deployed, then it carries exactly the groups of monitoring/prometheus/alerts.yml', () => {
      const rules = ofKind(objects, 'PrometheusRule');
      if (dir === 'overlays/development') return expect(rules).toEqual([]);
      expect(
        rules.map((r) => r.spec.groups),
        'run `node scripts/sync-prometheus-rule.mjs`',
      ).toEqual([readYaml<{ groups: unknown[] }>('monitoring/prometheus/alerts.yml').groups]);
    });
  });

  describe('probes against the real app', () => {
    const apps: TestApp[] = [];
    // Readiness runs SELECT 1 only: an empty database suffices. Its name is outside the test
    // helpers' tmpl_/t_ pattern, which a concurrent run's stale-database cleanup drops.
    let db: TestDatabase;
    const admin = async <T>(fn: (c: pg.Client) => Promise<T>) => {
      const c = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
      await c.connect();
      try {
        return await fn(c);
      } finally {
        await c.end();
      }
    };
    beforeAll(async () => {
      const name = `deploy_probes_${randomBytes(4).toString('hex')}`;
      await admin((c) => c.query(`CREATE DATABASE "${name}" TEMPLATE template0`));
      db = {
        name,
        url: databaseUrl(name),
        drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => {}),
      };
    });
    afterAll(async () => {
      await Promise.all(apps.map((a) => a.close()));
      await db?.drop();
    });

    it.each(OVERLAYS)(
      'when the kubelet probes k8s/%s pods, then /health and /ready answer 200 on PORT and /metrics is served on METRICS_PORT only',
      async (dir) => {
        const objects = render(dir);
        const d = server(objects);
        const c = d.template.spec.containers.find((x: Container) => x.name === 'api');
        const config: Config = loadConfig(appEnv(objects, d, c, true));
        // The manifest's configuration, on this machine's test database and Redis (whose TLS
        // settings differ from a managed service's).
        const env = Object.fromEntries(
          Object.entries(containerEnv(objects, c)).filter(
            // DATABASE_POOL_MODE=transaction needs PgBouncer and the role default the Job sets:
            // test/pgbouncer.test.ts runs that against the real thing.
            ([k]) =>
              !SECRET_FILE_KEYS.has(k) &&
              !k.startsWith('DATABASE_SSL') &&
              k !== 'DATABASE_POOL_MODE' &&
              k !== 'REDIS_KEY_PREFIX',
          ),
        );
        const t = await buildTestApp({ db, env: { ...env, JWT_SECRET: STRONG_TEST_SECRET } });
        apps.push(t);

        const probes = {
          startupProbe: '/health',
          livenessProbe: '/health',
          readinessProbe: '/ready',
        } as const;
        for (const [probe, expectedPath] of Object.entries(probes)) {
          const get = c[probe]?.httpGet;
          expect(get, `${probe} is missing`).toBeDefined();
          // Liveness must not depend on the database; readiness must.
          expect(get.path, probe).toBe(expectedPath);
          expect(containerPort(c, get.port), `${probe} port`).toBe(config.PORT);
          const res = await t.app.inject({ method: 'GET', url: get.path });
          expect(res.statusCode, `${probe} ${get.path}`).toBe(200);
        }
        expect(containerPort(c, 'metrics')).toBe(config.METRICS_PORT);
        expect((await t.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
        const metrics = await startMetricsServer(t.app.metrics.registry, '127.0.0.1', 0);
        try {
          const res = await fetch(`http://127.0.0.1:${(metrics.address() as AddressInfo).port}/metrics`);
          expect(res.status).toBe(200);
          expect(await res.text()).toContain('app_build_info');
        } finally {
          await new Promise((r) => metrics.close(r));
        }
      },
    );
  });

  it('when the development overlay connects, then its URLs carry the in-cluster PostgreSQL and Redis credentials and services', () => {
    const objects = render('overlays/development');
    const values = secretValues(objects, 'api-secrets') as Record<string, string>;
    const postgres = podOwners(objects).find((p) => p.owner.metadata.name === 'postgres') as PodOwner;
    const pgEnv = Object.fromEntries(
      postgres.template.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    const db = new URL(values.DATABASE_URL as string);
    const pgService = one(objects, 'Service', db.hostname);
    expect(selects({ matchLabels: pgService.spec.selector }, labelsOf(postgres))).toBe(true);
    expect(pgService.spec.ports.map((p: { port: number }) => p.port)).toContain(Number(db.port));
    expect(db.username).toBe(pgEnv.POSTGRES_USER);
    expect(db.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
    expect(decodeURIComponent(db.password)).toBe(
      secretValues(objects, 'postgres-credentials')?.POSTGRES_PASSWORD,
    );
    expect(
      secretFileSource(postgres, postgres.template.spec.containers[0], pgEnv.POSTGRES_PASSWORD_FILE),
    ).toEqual({
      secret: 'postgres-credentials',
      key: 'POSTGRES_PASSWORD',
    });

    const redisUrl = new URL(values.REDIS_URL as string);
    const redis = podOwners(objects).find((p) => p.owner.metadata.name === 'redis') as PodOwner;
    const redisService = one(objects, 'Service', redisUrl.hostname);
    expect(selects({ matchLabels: redisService.spec.selector }, labelsOf(redis))).toBe(true);
    expect(redisService.spec.ports.map((p: { port: number }) => p.port)).toContain(Number(redisUrl.port));
    expect(decodeURIComponent(redisUrl.password)).toBe(
      secretValues(objects, 'redis-credentials')?.REDIS_PASSWORD,
    );
    const rc = redis.template.spec.containers[0];
    expect(rc.args.slice(0, 2)).toEqual(['--requirepass', '$(REDIS_PASSWORD)']);
    // The probes authenticate (redis-cli reads REDISCLI_AUTH) and look for PONG (NOAUTH exits 0).
    expect(rc.env.map((e: { name: string }) => e.name)).toContain('REDISCLI_AUTH');
    expect(rc.readinessProbe.exec.command.join(' ')).toMatch(/redis-cli ping \| grep -q PONG/);
    expect(readText('k8s/overlays/development/kustomization.yaml')).toContain('NODE_ENV=development');
  });
});
