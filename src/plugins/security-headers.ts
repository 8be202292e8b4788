// Owns the API's security headers: @fastify/helmet with one strict policy for every response.
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** An API serves JSON, never documents: nothing may load, nothing may frame it. */
export const API_HELMET_OPTIONS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  },
  crossOriginEmbedderPolicy: false,
  hsts: { maxAge: 31_536_000, includeSubDomains: true },
};

async function securityHeadersPlugin(app: FastifyInstance) {
  // Its onRequest hook lands on the root (both plugins are fp-wrapped): 404s and errors get it too.
  await app.register(helmet, API_HELMET_OPTIONS);
}

export default fp(securityHeadersPlugin, { name: 'security-headers' });
