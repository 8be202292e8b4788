// Owns the pino options Fastify's logger is built with: JSON shape, redaction, request ids, stdout.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { type DestinationStream, destination, type LoggerOptions, stdTimeFunctions } from 'pino';
import type { Config } from '../config.ts';

/**
 * Where a secret can sit in a line this service writes; exact paths, so a line without these keys
 * costs nothing. Request bodies are never logged, query strings are masked by the access log, and
 * the configuration is logged through maskConfig.
 */
export const REDACT_PATHS = [
  // Fastify's req/res serializers leave headers out; these hold if a fork adds them back, as
  // Fastify's logging docs show, or logs `{ headers: request.headers }` while debugging.
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  // ioredis puts the failed command on its errors: for a refused login that is AUTH/HELLO with the
  // Redis password, logged by the redis plugin's 'error' listener.
  'err.command.args',
];

const CENSOR = '[redacted]';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Keeps a caller's x-request-id when it is well formed, so one id follows a request across services. */
export function genReqId(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export function buildLoggerOptions(config: Pick<Config, 'LOG_LEVEL' | 'SERVICE_NAME'>): LoggerOptions {
  return {
    level: config.LOG_LEVEL,
    base: { service: config.SERVICE_NAME },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: CENSOR },
  };
}

export type LogDestination = DestinationStream;

/** Lines are written in chunks of at least this many bytes... */
const BATCH_BYTES = 4096;
/** ...or after this long when fewer arrive, so a quiet service's lines still show promptly. */
const FLUSH_INTERVAL_MS = 100;

/**
 * JSON lines on stdout (or another descriptor) through pino's own destination, sonic-boom, batched:
 * a write per line is a system call and a wake-up of the reader per request. Writes are synchronous
 * so lines land in order: with `sync: false` the chunk still in flight when the process exits can
 * land after the lines pino flushes at exit. pino's fatal() flushes the buffer itself; pino registers
 * its exit flush only for asynchronous destinations, so this one registers its own.
 */
export function createLogDestination(fd = 1) {
  const stream = destination({
    dest: fd,
    sync: true,
    minLength: BATCH_BYTES,
    periodicFlush: FLUSH_INTERVAL_MS,
  });
  const flushAtExit = () => stream.flushSync();
  process.on('exit', flushAtExit);
  stream.on('close', () => process.off('exit', flushAtExit));
  return stream;
}

type PrettyFactory = (options: Record<string, unknown>) => LogDestination;

/**
 * The process's log stream: human-readable with LOG_PRETTY, otherwise JSON on stdout. pino-pretty
 * is a dev dependency loaded only here, in this thread rather than as a worker transport, so an
 * image without it logs JSON instead of failing to start. It writes synchronously so the last lines
 * before an exit are not lost.
 */
export function createLogStream(config: Pick<Config, 'LOG_PRETTY'>): LogDestination {
  if (config.LOG_PRETTY) {
    let pretty: PrettyFactory | undefined;
    try {
      pretty = createRequire(import.meta.url)('pino-pretty') as PrettyFactory;
    } catch {
      // not installed: JSON below
    }
    if (pretty) return pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true });
  }
  return createLogDestination();
}
