// Owns the pino options Fastify's logger is built with: JSON shape, redaction, request ids.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { type DestinationStream, type LoggerOptions, stdTimeFunctions } from 'pino';
import type { Config } from '../config.js';

/** Credentials can sit in headers or in body-like objects logged by mistake: never write them. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'password',
  'secret',
  'token',
  'apiKey',
  // pino's wildcards match one level each: fields are redacted up to two levels below the logged object.
  ...['password', 'secret', 'token', 'apiKey', 'accessToken', 'refreshToken', 'connectionString'].flatMap(
    (f) => [`*.${f}`, `*.*.${f}`],
  ),
];

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
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  // pino-pretty is a dev dependency: an image without it logs JSON instead of failing to start.
  if (config.LOG_PRETTY && hasPinoPretty()) {
    options.transport = {
      target: 'pino-pretty',
      options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
    };
  }
  return options;
}

export type LogDestination = DestinationStream;

function hasPinoPretty(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}
