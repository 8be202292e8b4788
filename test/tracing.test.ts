// Tracing end to end on the routes every fork keeps (/v1/api-keys: Postgres; auth and rate limit: Redis):
// the real server process with OpenTelemetry on, a real OTLP/HTTP receiver, and a real Prometheus for exemplars.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { signToken } from './helpers/auth.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { freePort, type ServerProcess, startProcess } from './helpers/process.ts';
import { startPrometheus } from './monitoring/support/prometheus.ts';
import { findTool, skipNote } from './monitoring/support/tools.ts';
import {
  descendsFrom,
  hex,
  type Receiver,
  startReceiver,
  traceparent,
  until,
  untracedServerEnv,
} from './tracing/otlp-receiver.ts';

const prometheusBinary = findTool('prometheus');

describe('OpenTelemetry tracing of the real process', () => {
  let db: TestDatabase;
  let receiver: Receiver;
  const servers: ServerProcess[] = [];
  const modulesFile = join(tmpdir(), `otel-modules-${process.pid}-${hex(4)}.txt`);
  const subject = `trace-${hex(4)}`;
  let token: string;

  const baseEnv = () => untracedServerEnv(db.url, TEST_REDIS_URL);
  async function start(env: Record<string, string>) {
    const server = await startProcess(
      process.execPath,
      ['--import', './test/tracing/record-modules.mjs', 'src/main.ts'],
      { ...baseEnv(), ...env },
    );
    servers.push(server);
    await server.waitForLog('ready');
    return server;
  }
  const call = (server: ServerProcess, path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${server.port}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...init.headers,
      },
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    receiver = await startReceiver();
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: db.url });
    token = signToken({ config } as FastifyInstance, { sub: subject, scope: 'admin' });
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await receiver.close();
    await db.drop();
    rmSync(modulesFile, { force: true });
  });

  describe('configured: parent-based sampling at ratio 1, exporting to a receiver', () => {
    let server: ServerProcess;
    beforeAll(async () => {
      server = await start({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '1',
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_SERVICE_NAME: 'traced-api',
      });
    });

    it('when a request carries a sampled traceparent, then its span continues that trace, is named by route pattern and parents the pg and ioredis spans', async () => {
      const traceId = hex(16);
      const created = await call(server, '/v1/api-keys', {
        method: 'POST',
        body: JSON.stringify({ name: 'traced-key-name', scopes: ['admin'] }),
        headers: { traceparent: traceparent(traceId, true) },
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      const deleteTrace = hex(16);
      const deleted = await call(server, `/v1/api-keys/${id}?token=secret-value`, {
        method: 'DELETE',
        headers: { traceparent: traceparent(deleteTrace, true) },
      });
      expect(deleted.status).toBe(204);

      const post = await receiver.requestSpan(traceId);
      expect(post.name).toBe('POST /v1/api-keys');
      expect(post.kind).toBe(2); // SERVER
      expect(post.attributes['http.route']).toBe('/v1/api-keys');
      expect(post.attributes['http.request.method']).toBe('POST');
      expect(post.attributes['http.response.status_code']).toBe(201);
      expect(post.attributes['app.auth.result']).toBe('authenticated');
      expect(post.attributes['app.auth.kind']).toBe('jwt');
      expect(post.attributes['app.rate_limit.result']).toBe('allowed');
      expect(post.attributes['app.rate_limit.backend']).toBe('redis');

      const del = await receiver.requestSpan(deleteTrace);
      // The route pattern, never the URL: no id, no query string anywhere on the span.
      expect(del.name).toBe('DELETE /v1/api-keys/:id');
      expect(del.attributes['http.route']).toBe('/v1/api-keys/:id');
      expect(del.attributes['url.path']).toBe(`/v1/api-keys/${id}`);
      expect(JSON.stringify(del)).not.toContain('secret-value');

      // Database and Redis work of the request: children of its span, statements without values.
      const children = await until(() => {
        const c = receiver.spans.filter((s) => s.traceId === traceId && s.scope !== '@fastify/otel');
        return c.some((s) => s.scope.includes('pg')) && c.some((s) => s.scope.includes('ioredis'))
          ? c
          : undefined;
      });
      // Queries and commands hang off the request span itself; a new pool connection's own connect
      // span sits under pg-pool.connect: every one of them descends from the request span.
      expect(descendsFrom(children, post.spanId)).toBe(true);
      for (const child of children.filter((s) => /^pg\.query|^[a-z]+$/.test(s.name)))
        expect(child.parentSpanId).toBe(post.spanId);
      const insert = children.find((s) => String(s.attributes['db.query.text']).startsWith('INSERT'));
      expect(insert?.attributes['db.query.text']).toContain('$1');
      expect(JSON.stringify(children)).not.toContain('traced-key-name');
      const deleteChildren = await until(() => {
        const c = receiver.spans.filter((s) => s.traceId === deleteTrace && s.scope !== '@fastify/otel');
        return c.some((s) => s.scope.includes('pg')) ? c : undefined;
      });
      expect(descendsFrom(deleteChildren, del.spanId)).toBe(true);

      // The request's log line carries the same trace id and its span id, next to the request id (the
      // server writes its lines in batches: wait for it).
      const line = await until(() =>
        server.logs.find((l) => l.msg === 'request completed' && l.traceId === traceId),
      );
      expect(line).toMatchObject({ traceId, spanId: post.spanId, statusCode: 201 });
      expect(line?.requestId).toBeTypeOf('string');
    });

    it('when a request is refused, then its span records the problem type, not the error message', async () => {
      const traceId = hex(16);
      const res = await call(server, '/v1/api-keys?limit=not-a-number', {
        headers: { traceparent: traceparent(traceId, true) },
      });
      expect(res.status).toBe(400);
      const { type } = (await res.json()) as { type: string };
      const span = await receiver.requestSpan(traceId);
      expect(span.attributes['app.problem.type']).toBe(type);
      expect(span.status).toMatchObject({ code: 2, message: type });
      expect(JSON.stringify(span)).not.toContain('exception');
      expect(JSON.stringify(span)).not.toContain('not-a-number');
    });

    it('when a trace context comes in not sampled, then nothing is exported but the log lines still carry its trace id', async () => {
      const traceId = hex(16);
      const res = await call(server, '/v1/me', { headers: { traceparent: traceparent(traceId, false) } });
      expect(res.status).toBe(200);
      const line = await until(() =>
        server.logs.find((l) => l.msg === 'request completed' && l.traceId === traceId),
      );
      expect(line.spanId).toMatch(/^[0-9a-f]{16}$/);
      // Another, sampled request exported after it: the unsampled one is not in any batch.
      const later = hex(16);
      await call(server, '/v1/me', { headers: { traceparent: traceparent(later, true) } });
      await until(() => receiver.spans.find((s) => s.traceId === later));
      expect(receiver.spans.some((s) => s.traceId === traceId)).toBe(false);
    });

    it('when a request has no trace context, then a trace starts here; probes are not traced', async () => {
      const res = await call(server, '/v1/me');
      const requestId = res.headers.get('x-request-id');
      const line = await until(() =>
        server.logs.find((l) => l.msg === 'request completed' && l.requestId === requestId),
      );
      const traceId = String(line.traceId);
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const span = await receiver.requestSpan(traceId);
      expect(span.parentSpanId).toBe('');
      expect(span.name).toBe('GET /v1/me');

      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 400));
      expect(receiver.spans.some((s) => s.attributes['http.route'] === '/health')).toBe(false);
    });

    it('when a sampled request is observed, then /metrics is OpenMetrics and its latency bucket carries the trace id as exemplar', async () => {
      const sampled = hex(16);
      const unsampled = hex(16);
      await call(server, '/v1/api-keys?limit=3', { headers: { traceparent: traceparent(sampled, true) } });
      await call(server, '/v1/api-keys?limit=3', { headers: { traceparent: traceparent(unsampled, false) } });
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.headers.get('content-type')).toBe(
        'application/openmetrics-text; version=1.0.0; charset=utf-8',
      );
      const body = await res.text();
      expect(body.endsWith('\n# EOF\n')).toBe(true);
      // The series names the alerts and dashboards use are the same in OpenMetrics.
      expect(body).toMatch(
        /^http_requests_total\{method="GET",route="\/v1\/api-keys",status_code="200"\} \d+$/m,
      );
      const exemplars = [
        ...body.matchAll(/^http_request_duration_seconds_bucket\{[^}]*\} \d+ # \{([^}]*)\} /gm),
      ];
      expect(exemplars.map((m) => m[1])).toContain(`traceId="${sampled}"`);
      // A trace nobody keeps is no exemplar: the unsampled request left the sampled one in its bucket.
      expect(body).not.toContain(unsampled);
    });

    describe.skipIf(!prometheusBinary)(
      `scraped by a real Prometheus with exemplar storage${skipNote('prometheus', prometheusBinary)}`,
      () => {
        it('when Prometheus scrapes the traced app, then query_exemplars returns the trace id of a sampled request and the usual series exist', async () => {
          const prom = await startPrometheus({
            binary: prometheusBinary as string,
            scrapeTargets: [`127.0.0.1:${server.port}`],
            ruleFiles: [],
            job: 'api',
            intervalSeconds: 1,
            readyTimeoutMs: 15_000,
            flags: ['--enable-feature=exemplar-storage'],
          });
          try {
            const traceId = hex(16);
            const startedAt = Date.now() / 1000 - 60;
            const res = await call(server, '/v1/me', {
              headers: { traceparent: traceparent(traceId, true) },
            });
            expect(res.status).toBe(200);
            type Exemplars = {
              seriesLabels: Record<string, string>;
              exemplars: { labels: { traceId?: string } }[];
            }[];
            const series = await until(async () => {
              const found = await prom.api<Exemplars>('/api/v1/query_exemplars', {
                query: 'http_request_duration_seconds_bucket{route="/v1/me"}',
                start: String(startedAt),
                end: String(Date.now() / 1000 + 60),
              });
              const hit = found.data?.find((s) => s.exemplars.some((e) => e.labels.traceId === traceId));
              return hit;
            }, 15_000);
            expect(series.seriesLabels).toMatchObject({
              __name__: 'http_request_duration_seconds_bucket',
              job: 'api',
            });
            // The same request, counted under the name the rules use: OpenMetrics parsing keeps `_total`.
            const counted = await prom.api<{ result: unknown[] }>('/api/v1/query', {
              query: 'http_requests_total{route="/v1/me",status_code="200"}',
            });
            expect(counted.data.result.length).toBe(1);
          } finally {
            await prom.stop();
          }
        }, 30_000);
      },
    );
  });

  it('when no endpoint is configured, then no OpenTelemetry module is loaded, nothing is exported and /metrics stays in the text format', async () => {
    rmSync(modulesFile, { force: true });
    const before = receiver.posts;
    const server = await start({ RECORD_MODULES_FILE: modulesFile, OTEL_TRACES_SAMPLER: 'always_on' });
    const traceId = hex(16);
    const res = await call(server, '/v1/me', { headers: { traceparent: traceparent(traceId, true) } });
    expect(res.status).toBe(200);
    const line = await until(() => server.logs.find((l) => l.msg === 'request completed'));
    expect(line).not.toHaveProperty('traceId');
    const metrics = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const body = await metrics.text();
    expect(body).not.toContain('# EOF');
    expect(body).not.toContain(traceId);
    await server.stop();
    let loaded: string[] = [];
    try {
      loaded = readFileSync(modulesFile, 'utf8').split('\n').filter(Boolean);
    } catch {
      // nothing recorded: the file was never created
    }
    // prom-client's own dependency, the no-op API (it reads the active span for exemplars), was
    // loaded before tracing existed; nothing else of OpenTelemetry is.
    expect(loaded.filter((line) => !line.includes('/@opentelemetry/api/'))).toEqual([]);
    expect(receiver.posts).toBe(before);
  });

  it('the recorder does see OpenTelemetry when an endpoint is configured (so the test above can fail)', async () => {
    rmSync(modulesFile, { force: true });
    const server = await start({
      RECORD_MODULES_FILE: modulesFile,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SDK_DISABLED: 'false',
    });
    await server.stop();
    expect(readFileSync(modulesFile, 'utf8')).toContain('@opentelemetry/sdk-trace');
  });

  it('when the receiver is down, then requests still answer at once', async () => {
    const closedPort = await freePort();
    const server = await start({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${closedPort}`,
      OTEL_TRACES_SAMPLER: 'always_on',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    });
    for (let i = 0; i < 40; i++) {
      const t0 = performance.now();
      const res = await call(server, '/v1/api-keys');
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      expect(performance.now() - t0).toBeLessThan(500);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 100)); // let exports fail in between
    }
    expect(server.child.exitCode).toBeNull();
  });

  it('when SIGTERM arrives under load, then every sampled span of an answered request is exported before exit', async () => {
    const server = await start({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_TRACES_SAMPLER: 'always_on',
      // Nothing leaves on the timer: whatever arrives was flushed by the shutdown.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    });
    const answered: string[] = [];
    // Clients keep sending until the process exits (a 503 or a closed connection ends a client):
    // the requests answered during the drain count too, and their spans must be exported.
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const traceId = hex(16);
        try {
          const res = await call(server, '/v1/api-keys', {
            headers: { traceparent: traceparent(traceId, true) },
          });
          await res.arrayBuffer();
          if (res.status !== 200) return; // draining: 503 and Connection: close
          answered.push(traceId);
        } catch {
          return; // the listener closed
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, worker));
    await until(() => (answered.length >= 40 ? true : undefined));
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    stop = true;
    await load;
    expect(server.logs.map((l) => l.msg)).toContain('shutdown: traces flushed');
    const exported = new Set(receiver.spans.map((s) => s.traceId));
    const lost = answered.filter((t) => !exported.has(t));
    expect(lost).toEqual([]);
    expect(answered.length).toBeGreaterThanOrEqual(40);
  });
});
