// Owns buildApp: the one place where plugins and modules are registered, top to bottom, in request order.
import cors from '@fastify/cors';
import underPressure from '@fastify/under-pressure';
import Fastify, { type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Config } from './config.ts';
import { AccessLogController } from './lib/access-log.ts';
import { buildLoggerOptions, createLogStream, genReqId, type LogDestination } from './lib/logger-options.ts';
import apiKeysRoutes from './modules/api-keys/api-keys-routes.ts';
import authRoutes from './modules/auth/auth-routes.ts';
import jwksRoutes from './modules/auth/jwks-routes.ts';
import healthRoutes from './modules/health/health-routes.ts';
import itemsRoutes from './modules/items/items-routes.ts';
import auth from './plugins/auth.ts';
import cache from './plugins/cache.ts';
import errorHandler, { clientErrorHandler, frameworkErrors } from './plugins/error-handler.ts';
import idempotency from './plugins/idempotency.ts';
import metrics, { metricsRoutes } from './plugins/metrics.ts';
import openapi, { openapiRoutes } from './plugins/openapi.ts';
import postgres, { openDatabase } from './plugins/postgres.ts';
import pubsub from './plugins/pubsub.ts';
import rateLimit from './plugins/rate-limit.ts';
import redis from './plugins/redis.ts';
import securityHeaders from './plugins/security-headers.ts';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    /** draining turns true on SIGTERM: /ready answers 503 so load balancers stop sending traffic. */
    lifecycle: { draining: boolean };
  }
}

export interface BuildOptions {
  /** Where logs go (tests capture them); stdout by default. */
  logStream?: LogDestination;
  /** Migrations applied with MIGRATE_ON_START (default: migrations/). */
  migrationsDir?: string;
}

/** A hop count trusts that many proxies nearest the server (what Fastify does with a number). */
function trustProxyOption(value: Config['TRUST_PROXY']) {
  return typeof value === 'number' ? (_address: string, hop: number) => hop < value : value;
}

export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const loggerOptions = buildLoggerOptions(config);
  // 1. Core: logger with correlation ids and one access line per request, proxy trust, timeouts, body limit,
  //    media types, zod compilers; what the router and Node's parser reject is problem+json too.
  const app = Fastify({
    logger: { ...loggerOptions, stream: options.logStream ?? createLogStream(config) },
    genReqId,
    requestIdHeader: false,
    logController: new AccessLogController(),
    trustProxy: trustProxyOption(config.TRUST_PROXY),
    bodyLimit: config.BODY_LIMIT,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    frameworkErrors,
    clientErrorHandler,
    // zod validates and serializes every route; given here, Fastify never loads its default compilers
    // (ajv, fast-json-stringify: ~12 ms of a start-up CPU profile). (The option's declared types are
    // those two libraries' own; Fastify calls zod's compilers exactly as it calls theirs.)
    schemaController: {
      compilersFactory: {
        buildValidator: (() => validatorCompiler) as never,
        buildSerializer: (() => serializerCompiler) as never,
      },
    },
  });
  // Bodies are JSON, or JSON merge patch (RFC 7396) where a route's schema.consumes declares it; Fastify's
  // text/plain parser goes, so only declared types are read (errorHandler's media-type gate: 415).
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser(
    'application/merge-patch+json',
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  );
  app.decorate('config', config);
  app.decorate('lifecycle', { draining: false });
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });

  // 2. Infrastructure. The database opens before any plugin loads (embedded start and migrations
  //    are not held to Fastify's plugin timeout), then the pool is registered over it.
  const database = await openDatabase(config, app.log, options.migrationsDir);
  await app.register(postgres, { database });
  await app.register(redis);
  await app.register(pubsub);
  await app.register(metrics);
  await app.register(auth);
  // Route options switched on per route (config.idempotency, config.cache). Idempotency before cache:
  // an idempotent write commits in its onSend hook, and only then is the cache invalidated.
  await app.register(idempotency);
  await app.register(cache);

  // 3. Edge: security headers, CORS, load shedding, rate limiting, errors as problem+json, OpenAPI.
  await app.register(securityHeaders);
  if (config.CORS_ORIGINS.length > 0) {
    await app.register(cors, {
      origin: config.CORS_ORIGINS.includes('*') ? '*' : config.CORS_ORIGINS,
      exposedHeaders: ['x-request-id', 'etag', 'location', 'retry-after'],
      maxAge: 600,
    });
  }
  await app.register(underPressure, {
    maxEventLoopDelay: config.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
    maxHeapUsedBytes: config.PRESSURE_MAX_HEAP_USED_BYTES,
    retryAfter: config.PRESSURE_RETRY_AFTER_S,
  });
  // Token buckets keyed by principal: its per-route hook runs after the /v1 context's auth hook.
  await app.register(rateLimit);
  await app.register(errorHandler, {
    ...(config.RATE_LIMIT_ENABLED ? { notFoundPreHandler: app.rateLimit() } : {}),
  });
  await app.register(openapi);

  // 4. Public routes: no auth; probes and metrics opt out of rate limiting.
  await app.register(healthRoutes);
  if (config.METRICS_PORT === undefined) await app.register(metricsRoutes);
  await app.register(openapiRoutes);
  await app.register(jwksRoutes);

  // 5. /v1: every route authenticated (then rate limited) and documented as such; guards declared
  //    per route with requireScope.
  await app.register(
    async (v1) => {
      v1.auth.protect(v1);
      await v1.register(authRoutes);
      await v1.register(apiKeysRoutes);
      await v1.register(itemsRoutes);
    },
    { prefix: '/v1' },
  );

  return app;
}
