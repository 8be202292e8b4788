// Owns liveness (/health) and readiness (/ready): public, never authenticated or rate limited.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { Gauge } from 'prom-client';
import { z } from 'zod';
import { PACKAGE_VERSION } from '../../lib/version.ts';
import { openapiTag } from '../../plugins/openapi.ts';

const CHECK_TIMEOUT_MS = 1000;
const READY_CACHE_MS = 1000;

const HealthResponse = z
  .object({
    status: z.literal('ok'),
    version: z.string().max(100),
    uptimeSeconds: z.int().min(0).max(2_147_483_647),
  })
  .meta({ id: 'Health' });

const ReadyResponse = z
  .object({
    status: z.enum(['ready', 'not_ready', 'shutting_down']),
    checks: z
      .object({
        database: z.enum(['ok', 'unavailable']),
        redis: z
          .enum(['ok', 'degraded', 'disabled'])
          .describe('degraded still serves, on in-memory fallbacks.'),
      })
      .optional()
      .describe('Absent while shutting down.'),
  })
  .meta({ id: 'Readiness' });
type Ready = z.infer<typeof ReadyResponse>;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Probes answer even under pressure and are never rate limited: they must see the truth. */
const opsConfig = { pressureHandler: () => undefined, rateLimit: false } as const;
const tags = openapiTag('ops', 'Probes for orchestrators and load balancers: public, never rate limited.');

export default async function healthRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/health',
    {
      config: opsConfig,
      schema: { operationId: 'getHealth', summary: 'Liveness', tags, response: { 200: HealthResponse } },
    },
    async () => ({
      status: 'ok' as const,
      version: app.config.APP_VERSION ?? PACKAGE_VERSION,
      uptimeSeconds: Math.round(process.uptime()),
    }),
  );

  async function check(): Promise<Ready> {
    const [database, redis] = await Promise.all([
      withTimeout(app.db.query('SELECT 1'), CHECK_TIMEOUT_MS).then(
        () => 'ok' as const,
        (err: unknown) => {
          app.log.warn({ err }, 'readiness: database check failed');
          return 'unavailable' as const;
        },
      ),
      app.redis === null
        ? Promise.resolve('disabled' as const)
        : app.redis.status !== 'ready'
          ? Promise.resolve('degraded' as const)
          : withTimeout(app.redis.ping(), CHECK_TIMEOUT_MS).then(
              () => 'ok' as const,
              () => 'degraded' as const,
            ),
    ]);
    // Redis down is "degraded", not "not ready": replicas keep serving on in-memory fallbacks.
    return { status: database === 'ok' ? 'ready' : 'not_ready', checks: { database, redis } };
  }

  // Probes from many sources (kubelet, load balancers, the metrics scrape) share one check per READY_CACHE_MS.
  let cached: { at: number; result: Promise<Ready> } | undefined;
  const readiness = (): Promise<Ready> => {
    const now = Date.now();
    if (cached === undefined || now - cached.at >= READY_CACHE_MS) cached = { at: now, result: check() };
    return cached.result;
  };

  // The same answer as /ready, for alerting: evaluated when Prometheus scrapes.
  new Gauge({
    name: 'app_ready',
    help: '1 when /ready would answer 200 (database reachable, not shutting down), else 0.',
    registers: [app.metrics.registry],
    async collect() {
      this.set(!app.lifecycle.draining && (await readiness()).status === 'ready' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'app_dependency_up',
    help: '1 when a dependency answers its readiness ping; redis is absent when not configured.',
    labelNames: ['dependency'] as const,
    registers: [app.metrics.registry],
    async collect() {
      const { checks } = await readiness();
      if (!checks) return;
      this.set({ dependency: 'database' }, checks.database === 'ok' ? 1 : 0);
      if (checks.redis !== 'disabled') this.set({ dependency: 'redis' }, checks.redis === 'ok' ? 1 : 0);
    },
  });

  app.get(
    '/ready',
    {
      config: { ...opsConfig, openapi: { headers: { 503: ['Retry-After'] } } },
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: 503 while the database is unreachable or the instance drains',
        tags,
        response: { 200: ReadyResponse, 503: ReadyResponse },
      },
    },
    async (_request, reply) => {
      if (app.lifecycle.draining) {
        reply.code(503).header('retry-after', '5');
        return { status: 'shutting_down' as const };
      }
      const result = await readiness();
      if (result.status !== 'ready') reply.code(503).header('retry-after', '5');
      return result;
    },
  );
}
