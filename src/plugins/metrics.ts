// Owns Prometheus metrics (app.metrics): process defaults, HTTP RED metrics by route pattern, pool and Redis state.
import http from 'node:http';
import type { FastifyInstance, onResponseHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  type Metric,
  type MetricValueWithName,
  Registry,
} from 'prom-client';
import { appendRouteHook } from '../lib/route-hooks.ts';
import { PACKAGE_VERSION } from '../lib/version.ts';

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

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One (method, route, status) series: per-bucket counts (not cumulative; the last is +Inf), sum and count. */
interface Series {
  labels: { method: string; route: string; status_code: string };
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * http_request_duration_seconds and http_requests_total, recorded into plain per-route tables and
 * rendered by prom-client's registry at scrape time (names, labels and buckets as prom-client's
 * Histogram and Counter would export them). prom-client's labelled metrics re-hash the label set on
 * every observe; here a request costs three Map lookups on strings V8 has already hashed.
 */
class HttpMetrics {
  private readonly routes = new Map<string, Map<string, Map<number, Series>>>();

  route(route: string) {
    let byMethod = this.routes.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.routes.set(route, byMethod);
    }
    const methods = byMethod;
    return {
      observe(method: string, status: number, seconds: number) {
        let byStatus = methods.get(method);
        if (byStatus === undefined) {
          byStatus = new Map();
          methods.set(method, byStatus);
        }
        let series = byStatus.get(status);
        if (series === undefined) {
          series = {
            labels: { method, route, status_code: String(status) },
            buckets: new Float64Array(DURATION_BUCKETS.length + 1),
            sum: 0,
            count: 0,
          };
          byStatus.set(status, series);
        }
        let i = 0;
        while (i < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[i] as number)) i++;
        (series.buckets[i] as number)++;
        series.sum += seconds;
        series.count++;
      },
    };
  }

  private *series(): Generator<Series> {
    for (const byMethod of this.routes.values())
      for (const byStatus of byMethod.values()) yield* byStatus.values();
  }

  durationMetric(): Metric {
    const name = 'http_request_duration_seconds';
    const help = 'HTTP request duration in seconds, by method, route pattern and status code.';
    return this.metric(name, help, 'histogram', () => {
      const values: MetricValueWithName<string>[] = [];
      for (const s of this.series()) {
        let cumulative = 0;
        for (let i = 0; i <= DURATION_BUCKETS.length; i++) {
          cumulative += s.buckets[i] as number;
          const le = i < DURATION_BUCKETS.length ? (DURATION_BUCKETS[i] as number) : '+Inf';
          values.push({ metricName: `${name}_bucket`, labels: { le, ...s.labels }, value: cumulative });
        }
        values.push({ metricName: `${name}_sum`, labels: s.labels, value: s.sum });
        values.push({ metricName: `${name}_count`, labels: s.labels, value: s.count });
      }
      return values;
    });
  }

  requestsMetric(): Metric {
    const help = 'HTTP requests completed, by method, route pattern and status code.';
    return this.metric('http_requests_total', help, 'counter', () =>
      Array.from(this.series(), (s) => ({ labels: s.labels, value: s.count })),
    );
  }

  private metric(
    name: string,
    help: string,
    type: 'histogram' | 'counter',
    values: () => MetricValueWithName<string>[],
  ): Metric {
    // The interface prom-client's registry reads: get() at scrape time, reset() from resetMetrics().
    const get = async () => ({ name, help, type, aggregator: 'sum', values: values() });
    return { name, help, type, get, reset: () => this.reset() } as unknown as Metric;
  }

  /** Zeroes every series in place: the per-route recorders handed out by route() stay valid. */
  private reset() {
    for (const s of this.series()) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

async function metricsPlugin(app: FastifyInstance) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const httpMetrics = new HttpMetrics();
  registry.registerMetric(httpMetrics.durationMetric());
  registry.registerMetric(httpMetrics.requestsMetric());
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
  // the hot path reads no routeOptions (a getter that builds an object per call) and builds no key.
  app.addHook('onRoute', (route) => {
    if (route.config?.metrics === false) return;
    const series = httpMetrics.route(route.url);
    const hook: onResponseHookHandler = (request, reply, done) => {
      series.observe(request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    };
    appendRouteHook(route, 'onResponse', hook);
  });
  const unmatched = httpMetrics.route(UNMATCHED_ROUTE);
  app.addHook('onRequest', (_request, _reply, done) => {
    inFlight++;
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    inFlight--;
    if (request.is404) unmatched.observe(request.method, reply.statusCode, reply.elapsedTime / 1000);
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
