// Owns the auth plugin's wiring: app.auth, request.principal and app.requireScope over the files in auth/.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type JwtKey, loadJwtKeys } from '../lib/jwt-keys.ts';
import type { Scope } from '../scopes.ts';
import { createApiKeyVerifier } from './auth/api-key-verifier.ts';
import { createAudit, type RequestAuditEvent } from './auth/audit.ts';
import { createAuthenticator } from './auth/credentials.ts';
import { createFailures, forbidden } from './auth/failures.ts';
import { createJwt, type IssuedToken } from './auth/jwt.ts';
import type { Principal } from './auth/principal.ts';
import { createRevocation } from './auth/revocation.ts';
import { requiredScopes, requireScope, type ScopeGuard } from './auth/scope-guard.ts';
import { securityFor } from './openapi.ts';

export { forbidden } from './auth/failures.ts';
export type { IssuedToken } from './auth/jwt.ts';
export type { Principal } from './auth/principal.ts';

export interface AuthService {
  /** onRequest hook for authenticated contexts: sets request.principal or answers 401. */
  authenticate(request: FastifyRequest): Promise<void>;
  issueToken(principal: Principal, scopes: string[]): IssuedToken;
  /** Revokes a token of `by` (or any token when `by` is admin) until it would expire. */
  revokeToken(token: string, by: Principal): Promise<{ revoked: boolean }>;
  /** Drops a revoked key from every instance's cache (and so every token minted from it). */
  invalidateApiKey(id: string): Promise<void>;
  audit(request: FastifyRequest, event: RequestAuditEvent): Promise<void>;
  jwtKeys: JwtKey[];
  /**
   * Authenticates every route of `context` (onRequest, so before body parsing and rate limiting) and
   * documents it: each route's OpenAPI `security`, with the scopes its guards require, is derived here,
   * never repeated by hand.
   */
  protect(context: FastifyInstance): void;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    auth: AuthService;
    /** A preHandler answering 403 unless the principal holds `scope` (declared in src/scopes.ts). */
    requireScope(scope: Scope): ScopeGuard;
  }
}

async function authPlugin(app: FastifyInstance) {
  const { config } = app;
  const keys = loadJwtKeys(config);
  const { audit, failed } = createAudit(app.db, config.AUTH_FAILURE_AUDIT_THRESHOLD);
  const { fail, succeeded } = createFailures(app.metrics.registry, failed);
  const apiKeys = createApiKeyVerifier(app, fail, () => succeeded('api_key'));
  const revocation = await createRevocation(app, apiKeys);
  const jwt = await createJwt(app, keys, {
    fail,
    succeeded: () => succeeded('jwt'),
    isRevoked: revocation.isRevoked,
    isKeyActive: apiKeys.isActive,
  });
  const authenticate = createAuthenticator(config, fail, { apiKey: apiKeys.verify, jwt: jwt.verify });

  const service: AuthService = {
    authenticate,
    protect(context) {
      context.addHook('onRequest', async (request, reply) => {
        await authenticate(request);
        reply.header('cache-control', 'private'); // per-principal: shared caches must not keep it
      });
      context.addHook('onRoute', (route) => {
        route.schema = {
          ...route.schema,
          security: route.schema?.security ?? securityFor(requiredScopes(route)),
        };
      });
    },
    jwtKeys: keys,
    audit,
    issueToken: jwt.issue,

    async revokeToken(token, by) {
      // Invalid or expired tokens need no revocation (RFC 7009 answers them with success too).
      const claims = jwt.claimsOf(token);
      if (claims === null) return { revoked: false };
      if (claims.sub !== by.subject && !by.scopes.includes('admin')) throw forbidden('admin');
      await revocation.revokeToken(claims.jti, claims.exp);
      return { revoked: true };
    },

    invalidateApiKey: revocation.invalidateApiKey,
  };

  app.decorate('auth', service);
  app.decorateRequest('principal', null);
  app.decorate('requireScope', requireScope);
}

export default fp(authPlugin, { name: 'auth', dependencies: ['postgres', 'redis', 'pubsub', 'metrics'] });
