// Owns the decision to trace: OpenTelemetry is loaded only when an OTLP endpoint is configured.
// With none (or OTEL_SDK_DISABLED=true) this module imports nothing of OpenTelemetry, registers no
// loader hook and adds no request hook: start-up and the hot path are what they are without it.
import type { FastifyRequest } from 'fastify';
import { loadDotEnv } from './config.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Present only when tracing started in this process (src/lib/opentelemetry.ts decorates it). */
    tracing?: RequestTracing;
  }
}

/** What the app's plugins may ask of tracing (metrics: the exemplar of a request's latency). */
export interface RequestTracing {
  /** The request's trace id when its trace is sampled (so the backend has it), else undefined. */
  sampledTraceId(request: FastifyRequest): string | undefined;
}

export interface Tracing {
  /** Ends the batch: exports every span still queued, then stops. Never rejects. */
  shutdown(): Promise<void>;
}

const TRUE_VALUES = new Set(['true', '1', 'yes']);

/** Tracing is on when an OTLP/HTTP endpoint is set, OTEL_SDK_DISABLED is not true and the exporter is not "none". */
export function tracingConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  if (TRUE_VALUES.has((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase())) return false;
  if ((env.OTEL_TRACES_EXPORTER ?? '').trim().toLowerCase() === 'none') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
}

/**
 * Called by src/main.ts before the app's modules are imported (the loader hook that instruments pg
 * and ioredis must be in place first). .env is read here so OTEL_* there count too.
 */
export async function startTracing(): Promise<Tracing | undefined> {
  loadDotEnv();
  if (!tracingConfigured()) return undefined;
  const { startOpenTelemetry } = await import('./lib/opentelemetry.ts');
  return startOpenTelemetry(process.env);
}
