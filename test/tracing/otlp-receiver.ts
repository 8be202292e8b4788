// A small OTLP/HTTP receiver for the tracing tests (the JSON encoding @opentelemetry/exporter-trace-otlp-http
// sends), and the helpers they share to wait for spans and check their parentage.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';

export interface ExportedSpan {
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

export async function startReceiver() {
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
    /** The server span (@fastify/otel) of a trace, once exported. */
    requestSpan(traceId: string) {
      return until(() => spans.find((s) => s.traceId === traceId && s.scope === '@fastify/otel'));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;

export async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every span's chain of parents (within `spans`) reaches `rootId`. */
export function descendsFrom(spans: ExportedSpan[], rootId: string): boolean {
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

export const hex = (bytes: number) => randomBytes(bytes).toString('hex');
export const traceparent = (traceId: string, sampled: boolean) =>
  `00-${traceId}-${hex(8)}-${sampled ? '01' : '00'}`;

/** The server's environment for a tracing test over `databaseUrl`, before any OTEL_* variable. */
export const untracedServerEnv = (databaseUrl: string, redisUrl: string): Record<string, string> => ({
  NODE_ENV: 'test',
  DATABASE_URL: databaseUrl,
  REDIS_URL: redisUrl,
  REDIS_KEY_PREFIX: `t${hex(4)}:`,
  MIGRATE_ON_START: 'false',
  SHUTDOWN_DELAY_MS: '0',
});
