// Owns the OpenAPI 3.1 document generated from the zod route schemas, /openapi.json and the /docs page.
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { PACKAGE_VERSION } from '../lib/version.ts';
import { API_HELMET_OPTIONS } from './security-headers.ts';

/** OpenAPI `security` for authenticated routes: a bearer JWT or API key, or an X-API-Key header. */
export const security: Record<string, string[]>[] = [{ bearerAuth: [] }, { apiKey: [] }];

async function openapiPlugin(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: `${app.config.SERVICE_NAME} API`,
        version: app.config.APP_VERSION ?? PACKAGE_VERSION,
        description: 'Errors are application/problem+json (RFC 9457).',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'JWT access token or API key' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
    transform: jsonSchemaTransform,
  });
}

export default fp(openapiPlugin, { name: 'openapi' });

/** GET /openapi.json, and the /docs UI when DOCS_ENABLED (its own context: relaxed CSP there only). */
export async function openapiRoutes(app: FastifyInstance) {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  if (!app.config.DOCS_ENABLED) return;
  // Loaded only when the page is on (never in production by default): no start-up cost otherwise.
  const { default: swaggerUi } = await import('@fastify/swagger-ui');
  // A nested @fastify/helmet: its hook runs after the API's in this context only, so only the page's own
  // routes get a CSP that lets swagger-ui's scripts and styles load; every other header stays the API's.
  await app.register(async (docs) => {
    await docs.register(helmet, {
      ...API_HELMET_OPTIONS,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'", "'unsafe-inline'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          frameAncestors: ["'none'"],
        },
      },
    });
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
}
