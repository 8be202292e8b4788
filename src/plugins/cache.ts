// Owns the response cache: an in-process LRU in front of Redis, per route, private per principal, invalidated by tag.
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onSendHookHandler,
  preHandlerHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import { LRUCache } from 'lru-cache';
import { Counter } from 'prom-client';
import { matches } from '../lib/etag.ts';
import { appendRouteHook } from '../lib/route-hooks.ts';

/**
 * A GET route's responses are cached under a tag; a write route declares the tag it invalidates
 * (once it succeeds, before its response leaves), e.g. `items:<owner>`. Declare one function and use
 * it on both, so they cannot drift apart.
 */
export type RouteCacheOptions =
  | {
      tag(request: FastifyRequest): string;
      /** Seconds; CACHE_DEFAULT_TTL when absent. */
      ttl?: number;
    }
  | { invalidates(request: FastifyRequest): string };
type CachedRoute = Extract<RouteCacheOptions, { tag: unknown }>;

declare module 'fastify' {
  interface FastifyContextConfig {
    cache?: RouteCacheOptions;
  }
  interface FastifyInstance {
    cache: { invalidate(tag: string): Promise<void> };
  }
}

interface Entry {
  body: string;
  contentType: string;
  etag: string | undefined;
}

interface Fill {
  key: string;
  ttlMs: number;
  tag: string;
  resolve(entry: Entry | null): void;
}

const fills = new WeakMap<FastifyRequest, Fill>();
const BREAKER_MS = 1000;
const TOPIC = 'cache';

async function cachePlugin(app: FastifyInstance) {
  const { config } = app;
  const redis = app.redis;
  const memory = new LRUCache<string, Entry>({
    max: config.CACHE_MAX_ITEMS,
    maxSize: config.CACHE_MAX_BYTES,
    sizeCalculation: (e) => e.body.length + 64,
    ttl: config.CACHE_DEFAULT_TTL * 1000,
  });
  // Tag generations: a write bumps its tag's generation, which is part of every key, so all entries
  // written before it become unreachable at once (and an in-flight fill of old data cannot resurrect).
  // Bounded by maxSize (one unit per tag) rather than max: lru-cache preallocates arrays for `max`
  // entries up front, ~4 MB of idle heap for 100,000 tags that most deployments never reach.
  const generations = new LRUCache<string, number>({ maxSize: 100_000, sizeCalculation: () => 1 });
  const inflight = new Map<string, Promise<Entry | null>>();
  let redisRetryAt = 0;

  const requests = new Counter({
    name: 'cache_requests_total',
    help: 'Response cache lookups by tier and result.',
    labelNames: ['tier', 'result'] as const,
    registers: [app.metrics.registry],
  });
  const count = {
    memoryHit: requests.labels('memory', 'hit'),
    memoryMiss: requests.labels('memory', 'miss'),
    redisHit: requests.labels('redis', 'hit'),
    redisMiss: requests.labels('redis', 'miss'),
  };

  const redisUsable = () => redis !== null && redis.status === 'ready' && Date.now() >= redisRetryAt;
  const redisFailed = (err: unknown) => {
    if (Date.now() >= redisRetryAt) app.log.warn({ err }, 'cache: Redis tier unavailable, memory tier only');
    redisRetryAt = Date.now() + BREAKER_MS;
  };

  async function generation(tag: string): Promise<number> {
    const known = generations.get(tag);
    if (known !== undefined) return known;
    let gen = 0;
    if (redis && redisUsable()) {
      try {
        gen = Number((await redis.get(`cache:gen:${tag}`)) ?? 0);
      } catch (err) {
        redisFailed(err);
      }
    }
    generations.set(tag, Math.max(gen, generations.get(tag) ?? 0));
    return generations.get(tag) as number;
  }

  app.pubsub.subscribe(TOPIC, (message) => {
    const { tag, gen } = message as { tag: string; gen: number };
    if ((generations.get(tag) ?? -1) < gen) generations.set(tag, gen);
  });
  app.pubsub.onResync(() => {
    // Invalidations may have been missed while Redis was away.
    generations.clear();
    memory.clear();
  });

  function send(request: FastifyRequest, reply: FastifyReply, entry: Entry, status: 'HIT') {
    reply.header('x-cache', status);
    if (entry.etag) {
      reply.header('etag', entry.etag);
      if (matches(request.headers['if-none-match'], entry.etag)) return reply.code(304).send();
    }
    return reply.type(entry.contentType).send(entry.body);
  }

  // Built per route, with the route's options bound: no routeOptions getter on the hot path.
  const lookupFor =
    (options: CachedRoute): preHandlerHookHandler =>
    async (request, reply) => {
      const principal = request.principal;
      // Authentication and authorization ran before this hook; no principal, no cache.
      if (principal === null) return;
      const tag = options.tag(request);
      // Known generations are read synchronously: no extra await on the hot path.
      const gen = generations.get(tag) ?? (await generation(tag));
      const key = `cache:${tag}:${gen}:${principal.subject}:${request.url}`;

      // `Cache-Control: no-cache` from the client: go to the origin (the fresh result refills the cache).
      const bypass = request.headers['cache-control']?.includes('no-cache') === true;
      const local = bypass ? undefined : memory.get(key);
      if (local) {
        count.memoryHit.inc();
        return send(request, reply, local, 'HIT');
      }
      count.memoryMiss.inc();

      // Single flight across both tiers: the first miss claims the key, later ones wait for its result.
      const pending = bypass ? undefined : inflight.get(key);
      if (pending) {
        const entry = await pending;
        if (entry) return send(request, reply, entry, 'HIT');
        reply.header('x-cache', 'MISS'); // the first load failed: load without claiming
        return;
      }
      let resolve!: (entry: Entry | null) => void;
      inflight.set(
        key,
        new Promise<Entry | null>((r) => {
          resolve = r;
        }),
      );

      if (!bypass && redis && redisUsable()) {
        try {
          const [[, raw], [, pttl]] = (await redis.multi().get(key).pttl(key).exec()) as [
            [null, string | null],
            [null, number],
          ];
          if (raw !== null) {
            count.redisHit.inc();
            const entry = JSON.parse(raw) as Entry;
            memory.set(key, entry, { ttl: Math.max(1, pttl) });
            inflight.delete(key);
            resolve(entry);
            return send(request, reply, entry, 'HIT');
          }
          count.redisMiss.inc();
        } catch (err) {
          redisFailed(err);
        }
      }
      fills.set(request, { key, tag, ttlMs: (options.ttl ?? config.CACHE_DEFAULT_TTL) * 1000, resolve });
      reply.header('x-cache', 'MISS');
    };

  const store: onSendHookHandler = (request, reply, payload, done) => {
    const fill = fills.get(request);
    if (fill === undefined) return done(null, payload);
    fills.delete(request);
    inflight.delete(fill.key);
    // Only successful bodies are kept; errors and 304s never are.
    if (reply.statusCode !== 200 || typeof payload !== 'string') {
      fill.resolve(null);
      return done(null, payload);
    }
    const etag = reply.getHeader('etag');
    const entry: Entry = {
      body: payload,
      contentType: String(reply.getHeader('content-type') ?? 'application/json; charset=utf-8'),
      etag: typeof etag === 'string' ? etag : undefined,
    };
    memory.set(fill.key, entry, { ttl: fill.ttlMs });
    fill.resolve(entry);
    if (redis && redisUsable()) {
      // Two commands, not one MULTI: on a Redis Cluster the entry and its tag's generation live in
      // different slots, so that one tag's entries spread over every shard.
      Promise.all([
        redis.set(fill.key, JSON.stringify(entry), 'PX', fill.ttlMs),
        // The generation must outlive every entry written under it.
        redis.pexpire(`cache:gen:${fill.tag}`, fill.ttlMs * 2),
      ]).catch(redisFailed);
    }
    done(null, payload);
  };

  // A request that dies before onSend must not leave waiters hanging.
  const release = (request: FastifyRequest) => {
    const fill = fills.get(request);
    if (fill) {
      fills.delete(request);
      inflight.delete(fill.key);
      fill.resolve(null);
    }
  };

  app.addHook('onRoute', (route) => {
    const options = route.config?.cache;
    if (options === undefined) return;
    if ('invalidates' in options) {
      const tagOf = options.invalidates;
      // After the route's own onSend hooks (an idempotent write commits there first).
      appendRouteHook(route, 'onSend', async (request, reply, payload) => {
        if (reply.statusCode >= 200 && reply.statusCode < 300) await invalidate(tagOf(request));
        return payload;
      });
      return;
    }
    if (route.method !== 'GET') return; // (and its HEAD twin, which Fastify adds with the same config)
    appendRouteHook(route, 'preHandler', lookupFor(options));
    appendRouteHook(route, 'onSend', store);
    appendRouteHook(route, 'onResponse', (request, _reply, done) => {
      release(request);
      done();
    });
  });

  // Tags written while Redis was unreachable: their shared generation is bumped once it is back,
  // so entries the Redis tier held from before the write are never served.
  const unsynced = new Set<string>();
  redis?.on('ready', () => {
    for (const tag of unsynced) {
      unsynced.delete(tag);
      invalidate(tag).catch((err: unknown) => app.log.warn({ err, tag }, 'cache: invalidation retry failed'));
    }
  });

  async function invalidate(tag: string): Promise<void> {
    let gen = (generations.get(tag) ?? 0) + 1;
    if (redis) {
      try {
        if (!redisUsable()) throw new Error('redis unavailable');
        const multi = await redis
          .multi()
          .incr(`cache:gen:${tag}`)
          .pexpire(`cache:gen:${tag}`, config.CACHE_DEFAULT_TTL * 2000)
          .exec();
        const incr = multi?.[0]?.[1];
        if (typeof incr === 'number') gen = Math.max(gen, incr);
      } catch (err) {
        unsynced.add(tag);
        if (redis.status === 'ready') redisFailed(err);
      }
    }
    generations.set(tag, gen);
    await app.pubsub.publish(TOPIC, { tag, gen });
  }

  app.decorate('cache', { invalidate });
}

export default fp(cachePlugin, { name: 'cache', dependencies: ['redis', 'pubsub', 'metrics'] });
