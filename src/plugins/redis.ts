// Owns the optional Redis client (app.redis), one server or a cluster: connected at start, state changes logged.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createRedisClient, type RedisClient } from '../lib/redis-client.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** null when neither REDIS_URL nor REDIS_CLUSTER_NODES is set: features fall back to in-memory stores. */
    redis: RedisClient | null;
  }
}

/** Resolves when the client is ready or after `ms`, whichever comes first; never rejects. */
function waitReady(client: RedisClient, ms: number): Promise<boolean> {
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
  const client = createRedisClient(app.config);
  if (client === null) {
    app.decorate('redis', null);
    app.log.info('REDIS_URL not set: using in-memory stores');
    return;
  }
  // Log once per state change, not once per failed reconnect attempt.
  let up: boolean | undefined;
  const setUp = (next: boolean, err?: unknown) => {
    if (up === next) return;
    up = next;
    if (next) app.log.info({ cluster: client.isCluster }, 'redis connected');
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
  app.decorate<RedisClient | null>('redis', client);

  app.addHook('onClose', async () => {
    client.removeAllListeners('error');
    client.on('error', () => {});
    if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
    else client.disconnect();
    app.log.info('redis closed');
  });
}

export default fp(redisPlugin, { name: 'redis' });
