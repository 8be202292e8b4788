// Owns rate limiting: @fastify/rate-limit over a token bucket (GCRA) in Redis, in memory while Redis is away.
import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onSendHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { Result } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { Counter, Gauge } from 'prom-client';
import { HttpProblem } from '../lib/problem.ts';
import { appendRouteHook } from '../lib/route-hooks.ts';
import { type BucketParams, type Decision, decide, GCRA_COMMAND, GCRA_LUA } from '../lib/token-bucket.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** GCRA_LUA on one client's bucket: [allowed (1/0), remaining, ttl ms]. */
    gcra(key: string, intervalMs: number, burst: number): Result<[number, number, number], Context>;
  }
}

type Backend = 'redis' | 'memory';

declare module 'fastify' {
  interface FastifyInstance {
    /** The store deciding now, for the request span's attributes (src/lib/opentelemetry.ts). */
    rateLimitBackend(): Backend;
  }
}

/** After a Redis error, stay on memory this long before trying Redis again (unless it reconnects first). */
const BREAKER_MS = 1000;

/** `"name";q=<quota>;w=<window seconds>` per draft-ietf-httpapi-ratelimit-headers. */
function policyHeader(name: string, max: number, windowMs: number): string {
  return `"${name}";q=${max};w=${Math.max(1, Math.ceil(windowMs / 1000))}`;
}

/** Bucket key: the API key id or JWT subject on authenticated routes, else the client address (IPv6 per /64). */
export function rateLimitKey(request: FastifyRequest): string {
  const p = request.principal;
  if (p) return p.kind === 'api_key' ? `k:${p.keyId}` : `s:${p.subject}`;
  return `ip:${normalizeIP(request.ip, 64)}`;
}

async function rateLimitPlugin(app: FastifyInstance) {
  const { config } = app;
  const burst = config.RATE_LIMIT_BURST ?? config.RATE_LIMIT_MAX_REQUESTS;
  // @fastify/rate-limit counts `max` per `timeWindow`: give it the bucket's capacity and the time the
  // bucket takes to refill completely, so `max - current` is the tokens left.
  const timeWindow = Math.round((burst * config.RATE_LIMIT_WINDOW_MS) / config.RATE_LIMIT_MAX_REQUESTS);
  const defaultPolicy = policyHeader('default', burst, timeWindow);

  const redis = app.redis;
  // ioredis sends EVALSHA and falls back to EVAL when Redis lacks the script (after a restart).
  redis?.defineCommand(GCRA_COMMAND, { lua: GCRA_LUA, numberOfKeys: 1 });
  // The fallback store, used only while Redis is away: bounded by maxSize (one unit per key) so its
  // storage grows with use instead of being preallocated for every possible key at start-up.
  const memory = new LRUCache<string, number>({
    maxSize: config.RATE_LIMIT_MEMORY_MAX_KEYS,
    sizeCalculation: () => 1,
    ttlAutopurge: false,
  });

  const decisions = new Counter({
    name: 'rate_limit_decisions_total',
    help: 'Rate limit decisions by result and backend.',
    labelNames: ['result', 'backend'] as const,
    registers: [app.metrics.registry],
  });
  const count = {
    redis: {
      allowed: decisions.labels({ result: 'allowed', backend: 'redis' }),
      limited: decisions.labels({ result: 'limited', backend: 'redis' }),
    },
    memory: {
      allowed: decisions.labels({ result: 'allowed', backend: 'memory' }),
      limited: decisions.labels({ result: 'limited', backend: 'memory' }),
    },
  };
  const backendGauge = new Gauge({
    name: 'rate_limit_backend',
    help: 'Which store the rate limiter uses: 1 for the active backend.',
    labelNames: ['backend'] as const,
    registers: [app.metrics.registry],
  });

  let backend: Backend = redis?.status === 'ready' ? 'redis' : 'memory';
  let redisRetryAt = 0;
  const publish = () => {
    backendGauge.set({ backend: 'redis' }, backend === 'redis' ? 1 : 0);
    backendGauge.set({ backend: 'memory' }, backend === 'memory' ? 1 : 0);
  };
  publish();
  if (redis === null)
    app.log.info('rate limiter: no Redis configured, using in-memory buckets (per instance)');
  const switchTo = (next: Backend, err?: unknown) => {
    if (next === backend) return;
    backend = next;
    publish();
    if (next === 'memory') app.log.warn({ err }, 'rate limiter: Redis unavailable, using in-memory buckets');
    else app.log.info('rate limiter: back on Redis');
  };
  redis?.on('ready', () => {
    redisRetryAt = 0;
    switchTo('redis');
  });
  redis?.on('close', () => switchTo('memory'));
  app.decorate('rateLimitBackend', () => backend);

  function fromMemory(key: string, p: BucketParams): Decision {
    const now = Date.now();
    const d = decide(memory.get(key), now, p);
    if (d.allowed) memory.set(key, d.tat, { ttl: d.ttlMs });
    count.memory[d.allowed ? 'allowed' : 'limited'].inc();
    return d;
  }

  // One script call per decision on the client's own key. Calls issued in one turn of the event
  // loop leave in one write: ioredis auto-pipelining (see plugins/redis.ts).
  function consume(key: string, p: BucketParams, done: (d: Decision) => void) {
    if (redis === null || redis.status !== 'ready' || Date.now() < redisRetryAt) {
      if (backend === 'redis') switchTo('memory');
      done(fromMemory(key, p));
      return;
    }
    redis.gcra(key, p.intervalMs, p.burst).then(
      ([allowed, remaining, ttlMs]) => {
        // A call sent before an error tripped the breaker does not switch back early.
        if (backend !== 'redis' && Date.now() >= redisRetryAt) switchTo('redis');
        count.redis[allowed === 1 ? 'allowed' : 'limited'].inc();
        done({ allowed: allowed === 1, remaining, ttlMs, tat: 0 });
      },
      (err: unknown) => {
        // Timeouts or errors: decide in memory now, and keep off Redis briefly so nothing queues on it.
        redisRetryAt = Date.now() + BREAKER_MS;
        switchTo('memory', err);
        done(fromMemory(key, p));
      },
    );
  }

  type Callback = (err: Error | null, result: { current: number; ttl: number }) => void;

  /** The custom store @fastify/rate-limit calls once per request; `child` serves per-route overrides. */
  class TokenBucketStore {
    /** @fastify/rate-limit constructs the store with its options; children get a per-route namespace. */
    private readonly namespace: string;

    constructor(_options: unknown, namespace = 'rl:') {
      this.namespace = namespace;
    }

    incr(key: string, cb: Callback, windowMs: number, max: number) {
      consume(this.namespace + key, { burst: max, intervalMs: windowMs / max }, (d) =>
        cb(null, { current: d.allowed ? max - d.remaining : max + 1, ttl: d.ttlMs }),
      );
    }

    child(routeOptions: { routeInfo?: { url?: string; method?: string | string[] } }) {
      const info = routeOptions.routeInfo ?? {};
      return new TokenBucketStore(routeOptions, `rl:${String(info.method)}:${info.url ?? ''}:`);
    }
  }

  // Structured-field headers next to the X-RateLimit-* ones the plugin sets, on every limited
  // response: each route's RateLimit-Policy is computed once and bound into its own onSend hook.
  const ietfHeaders = (policy: string): onSendHookHandler => {
    const name = policy.slice(0, policy.indexOf(';'));
    return (_request, reply, payload, done) => {
      const remaining = reply.getHeader('x-ratelimit-remaining');
      if (remaining !== undefined) {
        reply.header('ratelimit-policy', policy);
        reply.header('ratelimit', `${name};r=${remaining};t=${reply.getHeader('x-ratelimit-reset')}`);
      }
      done(null, payload);
    };
  };
  app.addHook('onRoute', (route) => {
    const rl = route.config?.rateLimit as { max?: number; timeWindow?: number } | false | undefined;
    if (rl === false) return;
    const policy =
      rl && typeof rl.max === 'number' && typeof rl.timeWindow === 'number'
        ? policyHeader('route', rl.max, rl.timeWindow)
        : defaultPolicy;
    appendRouteHook(route, 'onSend', ietfHeaders(policy));
  });
  // Unmatched URLs are limited too (the not-found handler's preHandler), with the default policy.
  const notFoundHeaders = ietfHeaders(defaultPolicy);
  app.addHook('onSend', function (request, reply, payload, done) {
    if (request.is404) notFoundHeaders.call(this, request, reply, payload, done);
    else done(null, payload);
  });

  await app.register(rateLimit, {
    // Off: routes are not limited (for deployments whose gateway limits), app.rateLimit() stays usable.
    global: config.RATE_LIMIT_ENABLED,
    max: burst,
    timeWindow,
    hook: 'onRequest',
    keyGenerator: rateLimitKey,
    store: TokenBucketStore as never,
    errorResponseBuilder: (_request, context) =>
      new HttpProblem(429, 'rate-limited', 'Too Many Requests', {
        detail: `Rate limit exceeded; retry in ${Math.ceil(context.ttl / 1000)} s.`,
        extensions: { retryAfter: Math.ceil(context.ttl / 1000) },
        headers: { 'retry-after': String(Math.ceil(context.ttl / 1000)) },
      }),
  });
}

export default fp(rateLimitPlugin, { name: 'rate-limit', dependencies: ['redis', 'metrics'] });
