// Owns the bench's OTLP/HTTP sink: when --service-env points the service's OTLP endpoint at a loopback
// port, a receiver there that answers every export at once and counts what it got (tracing's cost measured
// with a receiver that costs the service nothing beyond its own export).
import http from 'node:http';
import type { Cleanup } from './cleanup.ts';

export interface OtlpSink {
  url: string;
  /** One line for the report's notes: exports, spans and bytes received. */
  summary(): string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** The loopback port the service exports to, from the same variables the SDK reads; undefined when none. */
export function loopbackOtlpPort(env: Record<string, string>): number | undefined {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return undefined;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' || !LOOPBACK.has(url.hostname)) return undefined;
  return Number(url.port || 80);
}

/**
 * Starts the sink on `port` (127.0.0.1). When something already listens there (a real Collector), that
 * one is used and undefined comes back.
 */
export async function startOtlpSink(
  port: number,
  cleanup: Cleanup,
  log: (m: string) => void,
): Promise<OtlpSink | undefined> {
  let exports = 0;
  let spans = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1'); // counting only: no UTF-8 decoding
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      exports++;
      bytes += body.length;
      // JSON encoding (the exporter's default): one "spanId" key per span (parents are "parentSpanId").
      for (let at = body.indexOf('"spanId":'); at >= 0; at = body.indexOf('"spanId":', at + 9)) spans++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const listening = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE' ? resolve(false) : reject(err),
    );
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (!listening) {
    log(`bench: something already listens on 127.0.0.1:${port}: the service exports to it`);
    return undefined;
  }
  cleanup.add('stop the OTLP sink', () => new Promise<void>((resolve) => server.close(() => resolve())));
  log(`bench: OTLP/HTTP sink on 127.0.0.1:${port} (runs in the bench process)`);
  return {
    url: `http://127.0.0.1:${port}`,
    summary: () =>
      `OTLP sink (127.0.0.1:${port}, in the bench process, so its CPU counts as load generator's): ` +
      `${exports} exports, ${spans} spans, ${(bytes / 2 ** 20).toFixed(1)} MB received.`,
  };
}
