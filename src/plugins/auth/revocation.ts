// Owns revocation across instances: revoked token ids (local map, Redis sorted set) and the `auth`
// pub/sub topic that spreads them and drops revoked API keys from every instance's cache.
import type { FastifyInstance } from 'fastify';
import { HttpProblem } from '../../lib/problem.ts';

const REVOKED_SET = 'auth:revoked-jti';
const TOPIC = 'auth';

/** src/cli/auth.ts publishes the api_key message too (revoke-api-key). */
type AuthMessage = { type: 'jti'; jti: string; exp: number } | { type: 'api_key'; id: string };

export async function createRevocation(
  app: FastifyInstance,
  apiKeys: { forget(id: string): void; forgetAll(): void },
) {
  const { config } = app;
  const redis = app.redis;
  // Checked on every request; fed by Redis (sorted set + pub/sub) when present.
  const revokedJti = new Map<string, number>();

  app.pubsub.subscribe(TOPIC, (message) => {
    const m = message as AuthMessage;
    if (m.type === 'jti') revokedJti.set(m.jti, m.exp);
    else if (m.type === 'api_key') apiKeys.forget(m.id);
  });
  async function loadRevoked() {
    if (redis?.status !== 'ready') return;
    const now = Math.floor(Date.now() / 1000);
    const entries = await redis.zrangebyscore(REVOKED_SET, now, '+inf', 'WITHSCORES');
    for (let i = 0; i < entries.length; i += 2)
      revokedJti.set(entries[i] as string, Number(entries[i + 1]) * 1000);
  }
  app.pubsub.onResync(() => {
    // Messages may have been missed while Redis was away.
    apiKeys.forgetAll();
    loadRevoked().catch((err: unknown) => app.log.warn({ err }, 'could not reload revoked tokens'));
  });
  await loadRevoked().catch((err: unknown) => app.log.warn({ err }, 'could not load revoked tokens'));

  // Revocations are forgotten once the token would have expired anyway.
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [jti, exp] of revokedJti)
      if (exp + config.JWT_CLOCK_TOLERANCE_S * 1000 < now) revokedJti.delete(jti);
  }, 30_000);
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));

  return {
    isRevoked: (jti: string) => revokedJti.has(jti),

    /** Revokes a token id until `exp` (seconds), here at once and on every instance through Redis. */
    async revokeToken(jti: string, exp: number): Promise<void> {
      revokedJti.set(jti, exp * 1000);
      if (redis) {
        try {
          await redis
            .multi()
            .zadd(REVOKED_SET, exp, jti)
            .expire(REVOKED_SET, config.JWT_EXPIRES_IN + config.JWT_CLOCK_TOLERANCE_S + 60)
            .exec();
        } catch (err) {
          throw new HttpProblem(503, 'service-unavailable', 'Service Unavailable', {
            detail: 'The revocation could not be shared with other instances; retry.',
            headers: { 'retry-after': '5' },
            cause: err,
          });
        }
      }
      await app.pubsub.publish(TOPIC, { type: 'jti', jti, exp: exp * 1000 } satisfies AuthMessage);
    },

    async invalidateApiKey(id: string): Promise<void> {
      apiKeys.forget(id);
      await app.pubsub.publish(TOPIC, { type: 'api_key', id } satisfies AuthMessage);
    },
  };
}
