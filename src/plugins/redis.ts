// Owns the optional Redis client (app.redis): short timeouts, no unbounded offline queue, logged state changes.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Config } from '../config.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** null when REDIS_URL is not set: features fall back to in-memory stores. */
    redis: Redis | null;
  }
}

export function createRedis(config: Config, url: string): Redis {
  return new Redis(url, {
    keyPrefix: config.REDIS_KEY_PREFIX,
    connectTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    // Fail fast while disconnected: callers fall back to memory instead of waiting in a queue.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 3000),
    // Commands issued in one turn of the event loop (the limiter's script calls too) leave in one write.
    enableAutoPipelining: true,
    lazyConnect: true,
  });
}

/** Resolves when the client is ready or after `ms`, whichever comes first; never rejects. */
function waitReady(client: Redis, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    client.on('ready', onReady);
  });
}

async function redisPlugin(app: FastifyInstance) {
  const url = app.config.REDIS_URL;
  if (url === undefined) {
    app.decorate('redis', null);
    app.log.info('REDIS_URL not set: using in-memory stores');
    return;
  }
  const client = createRedis(app.config, url);
  // Log once per state change, not once per failed reconnect attempt.
  let up: boolean | undefined;
  const setUp = (next: boolean, err?: unknown) => {
    if (up === next) return;
    up = next;
    if (next) app.log.info('redis connected');
    else app.log.warn({ err }, 'redis unavailable: falling back to in-memory stores until it returns');
  };
  client.on('ready', () => setUp(true));
  client.on('error', (err) => setUp(false, err));
  client.on('end', () => setUp(false));
  client.on('close', () => {
    if (up) setUp(false);
  });

  client.connect().catch(() => {
    // The 'error' listener has logged it; retryStrategy keeps reconnecting in the background.
  });
  if (!(await waitReady(client, app.config.REDIS_CONNECT_TIMEOUT_MS))) setUp(false);
  app.decorate('redis', client);

  app.addHook('onClose', async () => {
    client.removeAllListeners('error');
    client.on('error', () => {});
    if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
    else client.disconnect();
    app.log.info('redis closed');
  });
}

export default fp(redisPlugin, { name: 'redis' });
