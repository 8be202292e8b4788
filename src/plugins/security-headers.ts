// Owns the API's security headers: helmet's policy computed once at startup, applied by one cheap hook.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

/** An API serves JSON, never documents: nothing may load, nothing may frame it. */
export const API_HELMET_OPTIONS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  },
  crossOriginEmbedderPolicy: false,
  hsts: { maxAge: 31_536_000, includeSubDomains: true },
} as const;

/**
 * Runs helmet once against a recording response and returns the headers it would set. @fastify/helmet
 * rebuilds every header on every request (tens of microseconds); these never change, so build them once.
 */
export function computeHelmetHeaders(options: Parameters<typeof helmet>[0]): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader(name: string, value: string | number | string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, () => {});
  return headers;
}

async function securityHeadersPlugin(app: FastifyInstance) {
  const headers = computeHelmetHeaders(API_HELMET_OPTIONS);
  const names = Object.keys(headers);
  const values = names.map((n) => headers[n] as string);
  app.addHook('onRequest', (_request, reply, done) => {
    for (let i = 0; i < names.length; i++) reply.header(names[i] as string, values[i]);
    done();
  });
}

export default fp(securityHeadersPlugin, { name: 'security-headers' });
