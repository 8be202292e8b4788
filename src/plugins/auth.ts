// Owns authentication (API keys and JWTs), request.principal, scope guards, token issuing and revocation.
import { randomUUID } from 'node:crypto';
import fastifyJwt, { type JWT } from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest, preHandlerHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { LRUCache } from 'lru-cache';
import { Counter } from 'prom-client';
import { apiKeyPattern, parseApiKey, secretMatches } from '../lib/api-key.ts';
import { type JwtKey, loadJwtKeys } from '../lib/jwt-keys.ts';
import { HttpProblem, serviceUnavailable } from '../lib/problem.ts';
import { createApiKeysRepository } from '../modules/api-keys/api-keys-repository.ts';
import { type AuditEvent, createAuditRepository } from '../modules/audit/audit-repository.ts';

export interface Principal {
  subject: string;
  scopes: readonly string[];
  kind: 'api_key' | 'jwt';
  /** The API key used, or the one a token was minted from. */
  keyId: string | null;
  /** jti of the token used, for JWTs. */
  tokenId: string | null;
}

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
  scopes: string[];
}

export interface AuthService {
  /** onRequest hook for authenticated contexts: sets request.principal or answers 401. */
  authenticate(request: FastifyRequest): Promise<void>;
  issueToken(principal: Principal, scopes: string[]): IssuedToken;
  /** Revokes a token of `by` (or any token when `by` is admin) until it would expire. */
  revokeToken(token: string, by: Principal): Promise<{ revoked: boolean }>;
  /** Drops a revoked key from every instance's cache (and so every token minted from it). */
  invalidateApiKey(id: string): Promise<void>;
  audit(request: FastifyRequest, event: Omit<AuditEvent, 'requestId' | 'clientAddress'>): Promise<void>;
  jwtKeys: JwtKey[];
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    auth: AuthService;
    requireScope(scope: string): preHandlerHookHandler;
  }
}

type FailureReason =
  | 'missing'
  | 'malformed'
  | 'ambiguous'
  | 'oversized'
  | 'unknown_key'
  | 'wrong_secret'
  | 'revoked'
  | 'expired'
  | 'not_yet_valid'
  | 'invalid_signature'
  | 'invalid_algorithm'
  | 'invalid_claims'
  | 'invalid_token';

const JWT_ERRORS: Record<string, FailureReason> = {
  FAST_JWT_EXPIRED: 'expired',
  FAST_JWT_INACTIVE: 'not_yet_valid',
  FAST_JWT_INVALID_SIGNATURE: 'invalid_signature',
  FAST_JWT_INVALID_ALGORITHM: 'invalid_algorithm',
  FAST_JWT_MALFORMED: 'malformed',
  FAST_JWT_INVALID_PAYLOAD: 'malformed',
  FAST_JWT_INVALID_TYPE: 'malformed',
  FAST_JWT_INVALID_CLAIM_TYPE: 'invalid_claims',
  FAST_JWT_INVALID_CLAIM_VALUE: 'invalid_claims',
  FAST_JWT_MISSING_REQUIRED_CLAIM: 'invalid_claims',
  FAST_JWT_MISSING_KEY: 'invalid_signature',
  FAST_JWT_MISSING_SIGNATURE: 'malformed',
};

/** One body for every authentication failure: it never tells whether a key exists. */
function unauthorized(withError: boolean): HttpProblem {
  return new HttpProblem(401, 'unauthorized', 'Unauthorized', {
    detail: 'Missing or invalid credentials.',
    headers: {
      'www-authenticate': withError ? 'Bearer realm="api", error="invalid_token"' : 'Bearer realm="api"',
    },
  });
}

export function forbidden(scope: string): HttpProblem {
  return new HttpProblem(403, 'forbidden', 'Forbidden', {
    detail: `This credential lacks the required scope: ${scope}.`,
    headers: { 'www-authenticate': `Bearer realm="api", error="insufficient_scope", scope="${scope}"` },
  });
}

interface KeyState {
  hash: Buffer;
  principal: Principal;
  expiresAt: number | null;
  revoked: boolean;
}
const NOT_FOUND = Symbol('not-found');
type CachedKey = KeyState | typeof NOT_FOUND;

interface TokenClaims {
  sub: string;
  scope?: string;
  akid?: string;
  jti: string;
  exp: number;
}

const REVOKED_SET = 'auth:revoked-jti';
const TOPIC = 'auth';

type AuthMessage = { type: 'jti'; jti: string; exp: number } | { type: 'api_key'; id: string };

async function authPlugin(app: FastifyInstance) {
  const { config } = app;
  const keys = loadJwtKeys(config);
  const apiKeys = createApiKeysRepository(app.db);
  const auditLog = createAuditRepository(app.db);
  const keyRegex = apiKeyPattern(config.API_KEY_PREFIX);
  const maxHeader = config.JWT_MAX_TOKEN_BYTES + 7; // "Bearer " + token

  // One @fastify/jwt namespace per key id: each verifier stays synchronous, cached and single-key.
  const verifyOptions = {
    algorithms: [config.JWT_ALGORITHM],
    allowedIss: config.JWT_ISSUER,
    allowedAud: config.JWT_AUDIENCE,
    requiredClaims: ['exp', 'iss', 'aud', 'sub', 'jti'],
    clockTolerance: config.JWT_CLOCK_TOLERANCE_S * 1000,
    checkTyp: 'jwt',
    cache: 10_000,
  };
  for (const key of keys) {
    await app.register(fastifyJwt, {
      namespace: key.kid,
      secret:
        key.algorithm === 'HS256'
          ? key.verifyKey
          : key.signKey
            ? { private: key.signKey, public: key.verifyKey }
            : { public: key.verifyKey },
      sign: {
        algorithm: key.algorithm,
        kid: key.kid,
        iss: config.JWT_ISSUER,
        aud: config.JWT_AUDIENCE,
        expiresIn: config.JWT_EXPIRES_IN, // seconds: @fastify/jwt converts them to ms for fast-jwt
      },
      verify: verifyOptions,
    });
  }
  const jwtByKid = app.jwt as unknown as Record<string, JWT>;
  const signer = keys[0]?.signKey ? jwtByKid[keys[0].kid] : undefined;
  const onlyVerifier = keys.length === 1 ? jwtByKid[keys[0]?.kid as string] : undefined;

  /** The namespace whose key can verify this token; its verify() then checks the signature and claims. */
  function verifierFor(token: string): JWT | undefined {
    if (onlyVerifier) return onlyVerifier;
    // Several keys (rotation): pick by the header's kid (app.jwt has no prototype to stumble on).
    try {
      const header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString()) as {
        kid?: unknown;
      };
      return typeof header.kid === 'string' ? jwtByKid[header.kid] : undefined;
    } catch {
      return undefined;
    }
  }

  // Metrics.
  const attempts = new Counter({
    name: 'auth_attempts_total',
    help: 'Authentication attempts by credential method and result.',
    labelNames: ['method', 'result'] as const,
    registers: [app.metrics.registry],
  });
  const failures = new Counter({
    name: 'auth_failures_total',
    help: 'Authentication failures by reason.',
    labelNames: ['reason'] as const,
    registers: [app.metrics.registry],
  });
  const success = {
    api_key: attempts.labels('api_key', 'success'),
    jwt: attempts.labels('jwt', 'success'),
  };

  // Repeated failures from one address become one audit event per minute.
  const failureCounts = new LRUCache<string, { count: number; since: number; reported: boolean }>({
    max: 10_000,
  });

  async function audit(request: FastifyRequest, event: Omit<AuditEvent, 'requestId' | 'clientAddress'>) {
    await auditLog.record({ ...event, requestId: request.id, clientAddress: request.ip });
  }

  function fail(request: FastifyRequest, method: string, reason: FailureReason): never {
    attempts.labels(method, 'failure').inc();
    failures.labels(reason).inc();
    const now = Date.now();
    const ip = request.ip;
    let entry = failureCounts.get(ip);
    if (!entry || now - entry.since > 60_000) {
      entry = { count: 0, since: now, reported: false };
      failureCounts.set(ip, entry);
    }
    entry.count++;
    if (entry.count >= config.AUTH_FAILURE_AUDIT_THRESHOLD && !entry.reported) {
      entry.reported = true;
      request.log.warn({ failures: entry.count }, 'repeated authentication failures');
      audit(request, {
        action: 'auth.repeated_failures',
        details: { failures: entry.count, lastReason: reason },
      }).catch((err: unknown) => request.log.error({ err }, 'audit write failed'));
    }
    throw unauthorized(reason !== 'missing');
  }

  // API keys: verified entries cached briefly; a revocation clears them everywhere through pub/sub.
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
      p = apiKeys
        .findForVerification(id)
        .then((row): CachedKey => {
          const entry: CachedKey = row
            ? {
                hash: row.secretHash,
                principal: Object.freeze({
                  subject: row.subject,
                  scopes: Object.freeze([...row.scopes]),
                  kind: 'api_key' as const,
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

  const keyUsable = (entry: CachedKey, now: number): entry is KeyState =>
    entry !== NOT_FOUND && !entry.revoked && (entry.expiresAt === null || entry.expiresAt > now);

  async function verifyApiKey(request: FastifyRequest, value: string): Promise<Principal> {
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
    success.api_key.inc();
    return state.principal;
  }

  // JWT revocation: a local map checked on every request, fed by Redis (sorted set + pub/sub) when present.
  const revokedJti = new Map<string, number>();
  const principals = new WeakMap<object, Principal>();

  async function verifyJwt(request: FastifyRequest, token: string): Promise<Principal> {
    const verifier = verifierFor(token);
    if (!verifier) fail(request, 'jwt', 'invalid_signature');
    let claims: TokenClaims;
    try {
      claims = verifier.verify<TokenClaims>(token);
    } catch (err) {
      fail(request, 'jwt', JWT_ERRORS[(err as { code?: string }).code ?? ''] ?? 'invalid_token');
    }
    if (revokedJti.has(claims.jti)) fail(request, 'jwt', 'revoked');
    if (claims.akid !== undefined) {
      const loaded = loadKey(claims.akid);
      const entry = loaded instanceof Promise ? await loaded : loaded;
      if (!keyUsable(entry, Date.now())) fail(request, 'jwt', 'revoked');
    }
    // fast-jwt's cache hands back the same claims object for a repeated token: build its principal once.
    let principal = principals.get(claims);
    if (principal === undefined) {
      if (typeof claims.sub !== 'string' || claims.sub.length === 0) fail(request, 'jwt', 'invalid_claims');
      principal = Object.freeze({
        subject: claims.sub,
        scopes: Object.freeze(
          typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [],
        ),
        kind: 'jwt' as const,
        keyId: typeof claims.akid === 'string' ? claims.akid : null,
        tokenId: claims.jti,
      });
      principals.set(claims, principal);
    }
    success.jwt.inc();
    return principal;
  }

  function countHeader(request: FastifyRequest, name: string): number {
    const raw = request.raw.rawHeaders;
    let n = 0;
    for (let i = 0; i < raw.length; i += 2)
      if ((raw[i] as string).length === name.length && (raw[i] as string).toLowerCase() === name) n++;
    return n;
  }

  async function authenticate(request: FastifyRequest): Promise<void> {
    const authorization = request.headers.authorization;
    const apiKeyHeader = request.headers['x-api-key'];
    if (authorization === undefined && apiKeyHeader === undefined) fail(request, 'none', 'missing');
    if (authorization !== undefined && apiKeyHeader !== undefined) fail(request, 'none', 'ambiguous');

    let credential: string;
    if (authorization !== undefined) {
      if (authorization.length > maxHeader) fail(request, 'none', 'oversized');
      // Node keeps only the first of duplicated Authorization headers; refuse instead of guessing.
      if (countHeader(request, 'authorization') > 1) fail(request, 'none', 'ambiguous');
      if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ')
        fail(request, 'none', 'malformed');
      credential = authorization.slice(7);
    } else {
      if (typeof apiKeyHeader !== 'string' || apiKeyHeader.length > maxHeader)
        fail(request, 'api_key', 'malformed');
      credential = apiKeyHeader;
    }

    if (credential.startsWith(`${config.API_KEY_PREFIX}_`)) {
      request.principal = await verifyApiKey(request, credential);
    } else if (authorization !== undefined) {
      request.principal = await verifyJwt(request, credential);
    } else {
      fail(request, 'api_key', 'malformed');
    }
  }

  // Revocation state shared across instances.
  const redis = app.redis;
  app.pubsub.subscribe(TOPIC, (message) => {
    const m = message as AuthMessage;
    if (m.type === 'jti') revokedJti.set(m.jti, m.exp);
    else if (m.type === 'api_key') keyCache.delete(m.id);
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
    keyCache.clear();
    loadRevoked().catch((err: unknown) => app.log.warn({ err }, 'could not reload revoked tokens'));
  });
  await loadRevoked().catch((err: unknown) => app.log.warn({ err }, 'could not load revoked tokens'));

  // Housekeeping: forget expired revocations; flush last-used times in one statement.
  const flushLastUsed = async () => {
    if (lastUsed.size === 0) return;
    const entries = [...lastUsed].map(([id, at]) => ({ id, at: new Date(at) }));
    lastUsed.clear();
    await apiKeys.touchLastUsed(entries);
  };
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [jti, exp] of revokedJti)
      if (exp + config.JWT_CLOCK_TOLERANCE_S * 1000 < now) revokedJti.delete(jti);
    flushLastUsed().catch((err: unknown) => app.log.warn({ err }, 'could not record api key last use'));
  }, 30_000);
  timer.unref();
  app.addHook('onClose', async () => {
    clearInterval(timer);
    await flushLastUsed().catch((err: unknown) => app.log.warn({ err }, 'could not record api key last use'));
  });

  const service: AuthService = {
    authenticate: (request) => authenticate(request),
    jwtKeys: keys,
    audit,

    issueToken(principal, scopes) {
      if (!signer) throw serviceUnavailable('This instance holds no signing key.', 60);
      const jti = randomUUID();
      const accessToken = signer.sign({
        sub: principal.subject,
        scope: scopes.join(' '),
        ...(principal.keyId ? { akid: principal.keyId } : {}),
        jti,
      });
      return { accessToken, expiresIn: config.JWT_EXPIRES_IN, scopes };
    },

    async revokeToken(token, by) {
      const verifier = verifierFor(token);
      let claims: TokenClaims;
      try {
        if (!verifier) throw new Error('unknown key');
        claims = verifier.verify<TokenClaims>(token);
      } catch {
        // Invalid or expired tokens need no revocation (RFC 7009 answers them with success too).
        return { revoked: false };
      }
      if (claims.sub !== by.subject && !by.scopes.includes('admin')) throw forbidden('admin');
      const exp = claims.exp * 1000;
      revokedJti.set(claims.jti, exp);
      if (redis) {
        try {
          await redis
            .multi()
            .zadd(REVOKED_SET, claims.exp, claims.jti)
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
      await app.pubsub.publish(TOPIC, { type: 'jti', jti: claims.jti, exp } satisfies AuthMessage);
      return { revoked: true };
    },

    async invalidateApiKey(id) {
      keyCache.delete(id);
      await app.pubsub.publish(TOPIC, { type: 'api_key', id } satisfies AuthMessage);
    },
  };

  app.decorate('auth', service);
  app.decorateRequest('principal', null);
  app.decorate('requireScope', (scope: string): preHandlerHookHandler => {
    return (request, _reply, done) => {
      const principal = request.principal;
      if (principal === null) return done(unauthorized(false));
      if (!principal.scopes.includes(scope)) return done(forbidden(scope));
      done();
    };
  });
}

export default fp(authPlugin, { name: 'auth', dependencies: ['postgres', 'redis', 'pubsub', 'metrics'] });
