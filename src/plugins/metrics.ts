// Owns Prometheus metrics (app.metrics): process defaults, HTTP RED metrics by route pattern, pool and Redis state.
import http from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  Registry,
  type RegistryContentType,
} from 'prom-client';
import { appendRouteHook } from '../lib/route-hooks.ts';
import { PACKAGE_VERSION } from '../lib/version.ts';
import type { RequestTracing } from '../tracing.ts';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry };
  }
  interface FastifyContextConfig {
    /** Set false on routes whose traffic must not count in the HTTP metrics (the scrape itself). */
    metrics?: boolean;
  }
}

/** Every unmatched URL shares this label, so scanners cannot explode the series count. */
export const UNMATCHED_ROUTE = 'unmatched';

/** An empty label set leaves the bucket's exemplar as it was (a request whose trace is not kept). */
const NO_EXEMPLAR = Object.freeze({});

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

async function metricsPlugin(app: FastifyInstance) {
  // With tracing on, the latency histogram carries the trace id of a sampled request as an exemplar,
  // which only OpenMetrics can expose: the registry then speaks OpenMetrics to every client (prom-client
  // renames counters in place for it, so one registry cannot serve both formats by Accept header).
  // Prometheus asks for OpenMetrics first and stores the same series names (`_total` included).
  const tracing = app.tracing;
  const registry = new Registry();
  if (tracing)
    // The other plugins' metrics register into it alike; only the exposition differs.
    (registry as Registry<RegistryContentType>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  collectDefaultMetrics({ register: registry });

  const labelNames = ['method', 'route', 'status_code'] as const;
  // Typed by string: prom-client types exemplar labels as the metric's own label names.
  const duration = new Histogram<string>({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration in seconds, by method, route pattern and status code.',
    labelNames,
    buckets: DURATION_BUCKETS,
    registers: [registry],
    enableExemplars: tracing !== undefined,
  });
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests completed, by method, route pattern and status code.',
    labelNames,
    registers: [registry],
  });
  function record(route: string, request: FastifyRequest, reply: FastifyReply) {
    const labels = { method: request.method, route, status_code: reply.statusCode };
    duration.observe(labels, reply.elapsedTime / 1000);
    requests.inc(labels);
  }
  /** With tracing: the bucket this request lands in keeps its trace id (the newest sampled one wins). */
  function recordWithExemplar(route: string, request: FastifyRequest, reply: FastifyReply) {
    const labels = { method: request.method, route, status_code: reply.statusCode };
    const traceId = (tracing as RequestTracing).sampledTraceId(request);
    duration.observe({
      labels,
      value: reply.elapsedTime / 1000,
      exemplarLabels: traceId === undefined ? NO_EXEMPLAR : { traceId },
    });
    requests.inc(labels);
  }
  const observe = tracing ? recordWithExemplar : record;

  let inFlight = 0;
  new Gauge({
    name: 'http_requests_in_flight',
    help: 'HTTP requests being processed.',
    registers: [registry],
    collect() {
      this.set(inFlight);
    },
  });
  new Gauge({
    name: 'app_build_info',
    help: 'Build information; always 1.',
    labelNames: ['version', 'node_version', 'service'] as const,
    registers: [registry],
  }).set(
    {
      version: app.config.APP_VERSION ?? PACKAGE_VERSION,
      node_version: process.version,
      service: app.config.SERVICE_NAME,
    },
    1,
  );

  const pool = app.db;
  new Gauge({
    name: 'pg_pool_connections',
    help: 'PostgreSQL pool connections by state (total, idle, waiting = queued requests for a connection).',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });
  new Gauge({
    name: 'pg_pool_max_connections',
    help: 'Configured maximum size of the PostgreSQL pool.',
    registers: [registry],
  }).set(app.config.DATABASE_POOL_MAX);
  const poolErrors = new Counter({
    name: 'pg_pool_errors_total',
    help: 'Errors raised by idle PostgreSQL pool connections.',
    registers: [registry],
  });
  pool.on('error', () => poolErrors.inc());

  const redis = app.redis;
  new Gauge({
    name: 'redis_up',
    help: '1 when the Redis connection is ready, 0 when down; absent series when Redis is not configured.',
    registers: [registry],
    collect() {
      if (redis) this.set(redis.status === 'ready' ? 1 : 0);
    },
  });

  // Matched routes get their own onResponse hook with the route pattern bound at registration, so
  // the hot path reads no routeOptions (a getter that builds an object per call).
  app.addHook('onRoute', (route) => {
    if (route.config?.metrics === false) return;
    const pattern = route.url;
    const hook: onResponseHookHandler = (request, reply, done) => {
      observe(pattern, request, reply);
      done();
    };
    appendRouteHook(route, 'onResponse', hook);
  });
  app.addHook('onRequest', (_request, _reply, done) => {
    inFlight++;
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    inFlight--;
    if (request.is404) observe(UNMATCHED_ROUTE, request, reply);
    done();
  });

  app.decorate('metrics', { registry });
}

export default fp(metricsPlugin, { name: 'metrics', dependencies: ['postgres', 'redis'] });

/** GET /metrics on the main listener (public context: no auth, no rate limit). */
export async function metricsRoutes(app: FastifyInstance) {
  app.get(
    '/metrics',
    { config: { metrics: false, rateLimit: false }, schema: { hide: true } },
    async (_request, reply) => {
      const body = await app.metrics.registry.metrics();
      return reply.type(app.metrics.registry.contentType).send(body);
    },
  );
}

/** METRICS_PORT: serves /metrics on its own listener so it need not be exposed with the API. */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?', 1)[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
