// Owns cross-instance messages (app.pubsub): Redis pub/sub when configured, in-process delivery always.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createRedisClient, publish, subscribe } from '../lib/redis-client.ts';

type Handler = (message: unknown) => void;

export interface PubSub {
  /** Delivers to this instance at once and to the others through Redis; false when Redis could not take it. */
  publish(topic: string, message: unknown): Promise<boolean>;
  subscribe(topic: string, handler: Handler): void;
  /** Called when the subscription comes back after a Redis outage: messages may have been missed. */
  onResync(handler: () => void): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    pubsub: PubSub;
  }
}

async function pubsubPlugin(app: FastifyInstance) {
  const origin = randomUUID();
  const handlers = new Map<string, Handler[]>();
  const resyncHandlers: (() => void)[] = [];
  const prefix = app.config.REDIS_KEY_PREFIX;

  const resync = () => {
    for (const h of resyncHandlers) h();
  };

  const deliver = (topic: string, message: unknown) => {
    for (const h of handlers.get(topic) ?? []) {
      try {
        h(message);
      } catch (err) {
        app.log.error({ err, topic }, 'pubsub handler failed');
      }
    }
  };

  const publisher = app.redis;
  const subscriber = publisher ? createRedisClient(app.config, { subscriber: true }) : null;

  if (subscriber) {
    let connectedBefore = false;
    subscriber.on('error', () => {}); // state is logged by the main client
    subscriber.on('ready', () => {
      subscribe(
        subscriber,
        [...handlers.keys()].map((t) => prefix + t),
      ).catch(() => {});
      if (connectedBefore) resync();
      connectedBefore = true;
    });
    // On a cluster the client moves its subscription to another node by itself when one leaves
    // (a failover): messages published meanwhile may be lost, as after an outage.
    if (subscriber.isCluster) subscriber.on('-node', () => connectedBefore && resync());
    const onMessage = (channel: string, raw: string) => {
      let envelope: { origin?: string; data?: unknown };
      try {
        envelope = JSON.parse(raw) as { origin?: string; data?: unknown };
      } catch {
        return;
      }
      if (envelope.origin === origin) return; // delivered locally when published
      deliver(channel.slice(prefix.length), envelope.data);
    };
    subscriber.on(subscriber.isCluster ? 'smessage' : 'message', onMessage);
    subscriber.connect().catch(() => {});
    app.addHook('onClose', async () => {
      subscriber.disconnect();
    });
  }

  app.decorate('pubsub', {
    async publish(topic, message) {
      deliver(topic, message);
      if (!publisher) return true;
      try {
        await publish(publisher, prefix + topic, JSON.stringify({ origin, data: message }));
        return true;
      } catch (err) {
        app.log.warn({ err, topic }, 'pubsub: publish failed, other instances will catch up by TTL');
        return false;
      }
    },
    subscribe(topic, handler) {
      const list = handlers.get(topic);
      if (list) list.push(handler);
      else {
        handlers.set(topic, [handler]);
        if (subscriber?.status === 'ready') subscribe(subscriber, [prefix + topic]).catch(() => {});
      }
    },
    onResync(handler) {
      resyncHandlers.push(handler);
    },
  } satisfies PubSub);
}

export default fp(pubsubPlugin, { name: 'pubsub', dependencies: ['redis'] });
