// Owns the pino options Fastify's logger is built with: JSON shape, redaction, request ids.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { type DestinationStream, destination, type LoggerOptions } from 'pino';
import type { Config } from '../config.ts';

/** Credential headers where Fastify and our code put them: exact paths, which pino redacts at no cost. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'res.headers["set-cookie"]',
];

/** Field names whose values are never written: in the logged object and up to three levels below it. */
const SECRET_FIELDS = new Set([
  'password',
  'secret',
  'token',
  'apikey',
  'api_key',
  'accesstoken',
  'access_token',
  'refreshtoken',
  'refresh_token',
  'connectionstring',
  'authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'privatekey',
]);
const CENSOR = '[redacted]';
const MAX_DEPTH = 3;

const isPlain = (v: object) => {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * Replaces secret-named fields in plain objects and arrays, copying only what changes. pino's own
 * wildcard redaction (`*.password`, `*.*.password`, ...) costs ~13 us on every line, which for the
 * access log is most of the logging budget; this scan costs a few Set lookups on a flat line.
 */
export function scrubSecrets(value: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in value) {
    const v = value[key];
    let next = v;
    if (SECRET_FIELDS.has(key) || SECRET_FIELDS.has(key.toLowerCase())) {
      if (v !== undefined && v !== null) next = CENSOR;
    } else if (depth < MAX_DEPTH && typeof v === 'object' && v !== null) {
      if (Array.isArray(v)) {
        let copy: unknown[] | undefined;
        for (let i = 0; i < v.length; i++) {
          const item = v[i];
          if (typeof item === 'object' && item !== null && isPlain(item)) {
            const scrubbed = scrubSecrets(item as Record<string, unknown>, depth + 1);
            if (scrubbed !== item) {
              copy ??= [...v];
              copy[i] = scrubbed;
            }
          }
        }
        if (copy) next = copy;
      } else if (isPlain(v)) {
        next = scrubSecrets(v as Record<string, unknown>, depth + 1);
      }
    }
    if (next !== v) {
      out ??= { ...value };
      out[key] = next;
    }
  }
  return out ?? value;
}

let stampMs = -1;
let stamp = '';
/**
 * pino's isoTime, formatted once per millisecond: under load several lines share a millisecond, and
 * `toISOString` was ~2 % of the hot path's CPU.
 */
function isoTime(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Keeps a caller's x-request-id when it is well formed, so one id follows a request across services. */
export function genReqId(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export function buildLoggerOptions(config: Config): LoggerOptions {
  const options: LoggerOptions = {
    level: config.LOG_LEVEL,
    base: { service: config.SERVICE_NAME },
    timestamp: isoTime,
    formatters: { level: (label) => ({ level: label }), log: (object) => scrubSecrets(object) },
    redact: { paths: REDACT_PATHS, censor: CENSOR },
  };
  return options;
}

export type LogDestination = DestinationStream;

interface LogFlush {
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/** Lines are written in chunks of at least this many characters... */
const BATCH_CHARS = 4096;
/** ...or after this long, whichever comes first: no line waits longer to be written. */
const MAX_DELAY_MS = 50;

/** Destinations holding lines not yet written: written synchronously when the process exits. */
const unwritten = new Set<() => void>();
let exitHookInstalled = false;

/**
 * stdout for the logger: pino's sonic-boom writing synchronously (pino's own default), one write
 * per batch of lines. A write per line was a system call per request, ~25 us at moderate load on a
 * 2-core VM; lines are joined into chunks of BATCH_CHARS, or written after MAX_DELAY_MS when fewer
 * arrive, so a write now carries ~15 lines under load. Writing synchronously keeps them in order
 * and makes every flush complete when it returns: pino's fatal() and process exit lose nothing
 * (a pending batch is written by an exit hook, and its timer keeps the process alive until then).
 * Buffers, not strings: in string mode sonic-boom re-measures its whole pending chunk per write.
 */
export function createLogDestination(fd = 1): LogDestination & LogFlush {
  const sonic = destination({ dest: fd, sync: true, contentMode: 'buffer' });
  let lines: string[] = [];
  let chars = 0;
  let timer: NodeJS.Timeout | undefined;
  const writeOut = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (lines.length === 0) return;
    const chunk = lines.join('');
    lines = [];
    chars = 0;
    unwritten.delete(writeOut);
    sonic.write(Buffer.from(chunk) as unknown as string);
  };
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const pending of unwritten) pending();
    });
  }
  return {
    write(line: string) {
      lines.push(line);
      chars += line.length;
      if (chars >= BATCH_CHARS) writeOut();
      else if (timer === undefined) {
        timer = setTimeout(writeOut, MAX_DELAY_MS);
        unwritten.add(writeOut);
      }
    },
    flush(cb?: (err?: Error) => void) {
      writeOut();
      sonic.flush(cb);
    },
    flushSync() {
      writeOut();
      sonic.flushSync();
    },
  };
}

type PrettyFactory = (options: Record<string, unknown>) => LogDestination;

/**
 * The process's log stream: human-readable with LOG_PRETTY (pino-pretty in this thread, not as a
 * worker transport, so pino bundles into dist/server.js), otherwise JSON on stdout. pino-pretty is a
 * dev dependency: an image without it logs JSON instead of failing to start.
 */
export function createLogStream(config: Pick<Config, 'LOG_PRETTY'>): LogDestination {
  if (config.LOG_PRETTY) {
    let pretty: PrettyFactory | undefined;
    try {
      pretty = createRequire(import.meta.url)('pino-pretty') as PrettyFactory;
    } catch {
      // not installed: JSON below
    }
    if (pretty) return pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  }
  return createLogDestination();
}
