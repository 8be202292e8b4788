// Owns API key verification: a short-lived LRU cache of keys, single-flight loads, batched last-used times.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { apiKeyPattern, parseApiKey, secretMatches } from '../../lib/api-key.ts';
import { createApiKeyStore } from './api-key-store.ts';
import type { Fail } from './failures.ts';
import { freezePrincipal, type Principal } from './principal.ts';

interface KeyState {
  hash: Buffer;
  principal: Principal;
  expiresAt: number | null;
  revoked: boolean;
}
const NOT_FOUND = Symbol('not-found');
type CachedKey = KeyState | typeof NOT_FOUND;

const usable = (entry: CachedKey, now: number): entry is KeyState =>
  entry !== NOT_FOUND && !entry.revoked && (entry.expiresAt === null || entry.expiresAt > now);

export function createApiKeyVerifier(app: FastifyInstance, fail: Fail, succeeded: () => void) {
  const { config } = app;
  const store = createApiKeyStore(app.db);
  const keyRegex = apiKeyPattern(config.API_KEY_PREFIX);

  // Verified entries are cached briefly; a revocation clears them everywhere through pub/sub.
  const keyCache = new LRUCache<string, CachedKey>({
    max: 10_000,
    ttl: Math.max(config.API_KEY_CACHE_TTL_MS, 1),
  });
  const pending = new Map<string, Promise<CachedKey>>();
  const lastUsed = new Map<string, number>();

  function loadKey(id: string): CachedKey | Promise<CachedKey> {
    const cached = config.API_KEY_CACHE_TTL_MS > 0 ? keyCache.get(id) : undefined;
    if (cached !== undefined) return cached;
    let p = pending.get(id);
    if (!p) {
      p = store
        .findForVerification(id)
        .then((row): CachedKey => {
          const entry: CachedKey = row
            ? {
                hash: row.secretHash,
                principal: freezePrincipal({
                  subject: row.subject,
                  scopes: row.scopes,
                  kind: 'api_key',
                  keyId: row.id,
                  tokenId: null,
                }),
                expiresAt: row.expiresAt ? row.expiresAt.getTime() : null,
                revoked: row.revokedAt !== null,
              }
            : NOT_FOUND;
          keyCache.set(id, entry);
          return entry;
        })
        .finally(() => pending.delete(id));
      pending.set(id, p);
    }
    return p;
  }

  async function verify(request: FastifyRequest, value: string): Promise<Principal> {
    const parsed = parseApiKey(keyRegex, value);
    if (parsed === null) fail(request, 'api_key', 'malformed');
    const loaded = loadKey(parsed.id);
    const entry = loaded instanceof Promise ? await loaded : loaded;
    const state = entry === NOT_FOUND ? undefined : entry;
    if (!secretMatches(parsed.secret, state?.hash) || state === undefined)
      fail(request, 'api_key', state === undefined ? 'unknown_key' : 'wrong_secret');
    const now = Date.now();
    if (state.revoked) fail(request, 'api_key', 'revoked');
    if (state.expiresAt !== null && state.expiresAt <= now) fail(request, 'api_key', 'expired');
    lastUsed.set(parsed.id, now);
    succeeded();
    return state.principal;
  }

  /** Whether the key exists, is not revoked and has not expired; synchronous when the key is cached. */
  function isActive(id: string): boolean | Promise<boolean> {
    const loaded = loadKey(id);
    return loaded instanceof Promise
      ? loaded.then((entry) => usable(entry, Date.now()))
      : usable(loaded, Date.now());
  }

  // Last-used times are flushed in one statement every 30 s and at close.
  const flushLastUsed = async () => {
    if (lastUsed.size === 0) return;
    const entries = [...lastUsed].map(([id, at]) => ({ id, at: new Date(at) }));
    lastUsed.clear();
    await store.touchLastUsed(entries);
  };
  const flushFailed = (err: unknown) => app.log.warn({ err }, 'could not record api key last use');
  const timer = setInterval(() => flushLastUsed().catch(flushFailed), 30_000);
  timer.unref();
  app.addHook('onClose', async () => {
    clearInterval(timer);
    await flushLastUsed().catch(flushFailed);
  });

  return {
    verify,
    isActive,
    /** Drops a key from this instance's cache (a revocation, here or on another instance). */
    forget: (id: string) => keyCache.delete(id),
    forgetAll: () => keyCache.clear(),
  };
}
