// Tracing end to end, on the example resource (its cached read and idempotent write show every span
// attribute); rm:resource removes it with items. The receiver and the server are real.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { signToken } from './helpers/auth.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { freePort, type ServerProcess, startProcess } from './helpers/process.ts';

interface ExportedSpan {
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status: { code?: number; message?: string };
}

interface OtlpJson {
  resourceSpans: {
    scopeSpans: {
      scope: { name: string };
      spans: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes: { key: string; value: Record<string, unknown> }[];
        status: { code?: number; message?: string };
      }[];
    }[];
  }[];
}

/** A small OTLP/HTTP receiver: the JSON encoding @opentelemetry/exporter-trace-otlp-http sends. */
async function startReceiver() {
  const spans: ExportedSpan[] = [];
  let posts = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      posts++;
      expect(req.url).toBe('/v1/traces');
      expect(req.headers['content-type']).toContain('application/json');
      const data = JSON.parse(body) as OtlpJson;
      for (const rs of data.resourceSpans)
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            spans.push({
              scope: ss.scope.name,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? '',
              name: s.name,
              kind: s.kind,
              attributes: Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]])),
              status: s.status,
            });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    get posts() {
      return posts;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

async function until<T>(probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every span's chain of parents (within `spans`) reaches `rootId`. */
function descendsFrom(spans: ExportedSpan[], rootId: string): boolean {
  const parentOf = new Map(spans.map((s) => [s.spanId, s.parentSpanId]));
  return spans.every((s) => {
    let parent = s.parentSpanId;
    while (parent !== rootId) {
      const next = parentOf.get(parent);
      if (next === undefined) return false;
      parent = next;
    }
    return true;
  });
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const traceparent = (traceId: string, sampled: boolean) => `00-${traceId}-${hex(8)}-${sampled ? '01' : '00'}`;

describe('OpenTelemetry tracing of the real process', () => {
  let db: TestDatabase;
  let receiver: Receiver;
  const servers: ServerProcess[] = [];
  const modulesFile = join(tmpdir(), `otel-modules-${process.pid}-${hex(4)}.txt`);
  const subject = `trace-${hex(4)}`;
  let token: string;

  const baseEnv = () => ({
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: `t${hex(4)}:`,
    MIGRATE_ON_START: 'false',
    SHUTDOWN_DELAY_MS: '0',
  });
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
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers },
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    receiver = await startReceiver();
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: db.url });
    token = signToken({ config } as FastifyInstance, { sub: subject, scope: 'items:read items:write' });
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
      const created = await call(server, '/v1/items', {
        method: 'POST',
        body: JSON.stringify({ name: 'traced' }),
        headers: { traceparent: traceparent(traceId, true) },
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      const readTrace = hex(16);
      const read = await call(server, `/v1/items/${id}?token=secret-value`, {
        headers: { traceparent: traceparent(readTrace, true) },
      });
      expect(read.status).toBe(200);

      const post = await until(() =>
        receiver.spans.find((s) => s.traceId === traceId && s.scope === '@fastify/otel'),
      );
      expect(post.name).toBe('POST /v1/items');
      expect(post.kind).toBe(2); // SERVER
      expect(post.attributes['http.route']).toBe('/v1/items');
      expect(post.attributes['http.request.method']).toBe('POST');
      expect(post.attributes['http.response.status_code']).toBe(201);
      expect(post.attributes['app.auth.kind']).toBe('jwt');
      expect(post.attributes['app.rate_limit.result']).toBe('allowed');
      expect(post.attributes['app.rate_limit.backend']).toBe('redis');

      const get = await until(() =>
        receiver.spans.find((s) => s.traceId === readTrace && s.scope === '@fastify/otel'),
      );
      // The route pattern, never the URL: no id, no query string anywhere on the span.
      expect(get.name).toBe('GET /v1/items/:id');
      expect(get.attributes['url.path']).toBe(`/v1/items/${id}`);
      expect(JSON.stringify(get)).not.toContain('secret-value');
      expect(get.attributes['app.cache.result']).toBe('miss');

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
      expect(JSON.stringify(children)).not.toContain('"traced"');
      const readChildren = receiver.spans.filter(
        (s) => s.traceId === readTrace && s.scope !== '@fastify/otel',
      );
      expect(readChildren.some((s) => s.scope.includes('pg'))).toBe(true);
      expect(descendsFrom(readChildren, get.spanId)).toBe(true);

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
      const res = await call(server, '/v1/items', {
        method: 'POST',
        body: '{"name": ',
        headers: { traceparent: traceparent(traceId, true) },
      });
      expect(res.status).toBe(400);
      const { type } = (await res.json()) as { type: string };
      const span = await until(() =>
        receiver.spans.find((s) => s.traceId === traceId && s.scope === '@fastify/otel'),
      );
      expect(span.attributes['app.problem.type']).toBe(type);
      expect(span.status).toMatchObject({ code: 2, message: type });
      expect(JSON.stringify(span)).not.toContain('exception');
    });

    it('when a trace context comes in not sampled, then nothing is exported but the log lines still carry its trace id', async () => {
      const traceId = hex(16);
      const res = await call(server, '/v1/items', { headers: { traceparent: traceparent(traceId, false) } });
      expect(res.status).toBe(200);
      const line = await until(() =>
        server.logs.find((l) => l.msg === 'request completed' && l.traceId === traceId),
      );
      expect(line.spanId).toMatch(/^[0-9a-f]{16}$/);
      // Another, sampled request exported after it: the unsampled one is not in any batch.
      const later = hex(16);
      await call(server, '/v1/items', { headers: { traceparent: traceparent(later, true) } });
      await until(() => receiver.spans.find((s) => s.traceId === later));
      expect(receiver.spans.some((s) => s.traceId === traceId)).toBe(false);
    });

    it('when a request has no trace context, then a trace starts here; probes are not traced', async () => {
      const res = await call(server, '/v1/items');
      const requestId = res.headers.get('x-request-id');
      const line = await until(() =>
        server.logs.find((l) => l.msg === 'request completed' && l.requestId === requestId),
      );
      const traceId = String(line.traceId);
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const span = await until(() =>
        receiver.spans.find((s) => s.traceId === traceId && s.scope === '@fastify/otel'),
      );
      expect(span.parentSpanId).toBe('');
      expect(span.name).toBe('GET /v1/items');

      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 400));
      expect(receiver.spans.some((s) => s.attributes['http.route'] === '/health')).toBe(false);
    });
  });

  it('when no endpoint is configured, then no OpenTelemetry module is loaded and nothing is exported', async () => {
    rmSync(modulesFile, { force: true });
    const before = receiver.posts;
    const server = await start({ RECORD_MODULES_FILE: modulesFile, OTEL_TRACES_SAMPLER: 'always_on' });
    const traceId = hex(16);
    const res = await call(server, '/v1/items', { headers: { traceparent: traceparent(traceId, true) } });
    expect(res.status).toBe(200);
    const line = await until(() => server.logs.find((l) => l.msg === 'request completed'));
    expect(line).not.toHaveProperty('traceId');
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
      const res = await call(server, '/v1/items');
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
          const res = await call(server, '/v1/items', {
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
