// Owns making a Redis client from the configuration: one server (REDIS_URL) or a Redis Cluster
// (REDIS_CLUSTER_NODES), with the same short timeouts and fail-fast behaviour either way.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { type Config, parseClusterNodes } from '../config.ts';

/** What the features use: every command they send works on both (single-key commands and scripts). */
export type RedisClient = Redis | Cluster;

export interface ClientRole {
  /**
   * A pub/sub subscriber: queues commands while disconnected and retries forever, where the
   * command client fails fast so that callers fall back to memory instead of waiting.
   */
  subscriber?: boolean;
}

const retry = (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 3000);

/** null when neither REDIS_URL nor REDIS_CLUSTER_NODES is set. */
export function createRedisClient(config: Config, role: ClientRole = {}): RedisClient | null {
  const fastFail = !role.subscriber;
  const common = {
    connectTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
    ...(fastFail ? { commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS } : {}),
    maxRetriesPerRequest: fastFail ? 1 : null,
  } satisfies RedisOptions;

  if (config.REDIS_CLUSTER_NODES !== undefined) {
    const seeds = parseClusterNodes(config.REDIS_CLUSTER_NODES);
    if (typeof seeds === 'string') throw new Error(`REDIS_CLUSTER_NODES: ${seeds}`); // loadConfig refused it already
    return new Cluster(seeds.nodes, {
      keyPrefix: config.REDIS_KEY_PREFIX,
      enableOfflineQueue: !fastFail,
      enableAutoPipelining: fastFail,
      lazyConnect: true,
      clusterRetryStrategy: retry,
      // While a master is down, each retry (100 ms apart) fails at once: give up after a few, so
      // that a caller falls back to memory within about the command timeout, not after 16 tries.
      ...(fastFail ? { maxRedirections: 3 } : {}),
      slotsRefreshTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
      // One subscriber connection per master, for sharded pub/sub (see `publish` below).
      shardedSubscribers: !fastFail,
      redisOptions: {
        ...common,
        ...(seeds.username ? { username: seeds.username } : {}),
        ...(seeds.password ? { password: seeds.password } : {}),
        ...(seeds.tls ? { tls: {} } : {}),
      },
    });
  }
  if (config.REDIS_URL === undefined) return null;
  return new Redis(config.REDIS_URL, {
    ...common,
    keyPrefix: config.REDIS_KEY_PREFIX,
    // Fail fast while disconnected: callers fall back to memory instead of waiting in a queue.
    enableOfflineQueue: !fastFail,
    retryStrategy: retry,
    // Commands issued in one turn of the event loop (the limiter's script calls too) leave in one write.
    enableAutoPipelining: fastFail,
    lazyConnect: true,
  });
}

/**
 * On a cluster, sharded pub/sub: the master that owns the channel's slot delivers to its
 * subscribers before it answers, as one Redis does, so a reader on another instance sees an
 * invalidation before the writer's response returns. Classic PUBLISH would reach subscribers on
 * other nodes later, over the cluster bus.
 */
export function publish(client: RedisClient, channel: string, message: string): Promise<unknown> {
  return client instanceof Cluster
    ? client.spublish(unprefixed(client, channel), message)
    : client.publish(channel, message);
}

/**
 * Subscribes `client` (made with `{ subscriber: true }`) to channels, named in full as `publish`
 * takes them; messages arrive as 'message' or, on a cluster, 'smessage', with the full name.
 */
export async function subscribe(client: RedisClient, channels: string[]): Promise<void> {
  if (channels.length === 0) return;
  if (!(client instanceof Cluster)) await client.subscribe(...channels);
  // Channels of different slots cannot share one SSUBSCRIBE.
  else await Promise.all(channels.map((channel) => client.ssubscribe(unprefixed(client, channel))));
}

/** ioredis adds keyPrefix to shard channels (to Redis they are keys), never to classic ones. */
function unprefixed(client: Cluster, channel: string): string {
  const prefix = client.options.keyPrefix ?? '';
  return channel.startsWith(prefix) ? channel.slice(prefix.length) : channel;
}
