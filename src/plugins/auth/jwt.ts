// Owns JWTs: one @fastify/jwt namespace per key id, the one library path that both issues and verifies
// tokens, and the principal a verified token stands for.
import { randomUUID } from 'node:crypto';
import fastifyJwt, { type JWT } from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JwtKey } from '../../lib/jwt-keys.ts';
import { serviceUnavailable } from '../../lib/problem.ts';
import type { Fail, FailureReason } from './failures.ts';
import { freezePrincipal, type Principal } from './principal.ts';

export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
  scopes: string[];
}

export interface TokenClaims {
  sub: string;
  scope?: string;
  akid?: string;
  jti: string;
  exp: number;
}

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

export interface JwtChecks {
  fail: Fail;
  succeeded(): void;
  isRevoked(jti: string): boolean;
  /** Whether the API key a token was minted from is still usable. */
  isKeyActive(id: string): boolean | Promise<boolean>;
}

export async function createJwt(app: FastifyInstance, keys: JwtKey[], checks: JwtChecks) {
  const { config } = app;
  const fail: Fail = checks.fail; // declared with its type, so TypeScript narrows after each call

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

  const principals = new WeakMap<object, Principal>();

  async function verify(request: FastifyRequest, token: string): Promise<Principal> {
    const verifier = verifierFor(token);
    if (!verifier) fail(request, 'jwt', 'invalid_signature');
    let claims: TokenClaims;
    try {
      claims = verifier.verify<TokenClaims>(token);
    } catch (err) {
      fail(request, 'jwt', JWT_ERRORS[(err as { code?: string }).code ?? ''] ?? 'invalid_token');
    }
    if (checks.isRevoked(claims.jti)) fail(request, 'jwt', 'revoked');
    if (claims.akid !== undefined) {
      const active = checks.isKeyActive(claims.akid);
      if (!(active instanceof Promise ? await active : active)) fail(request, 'jwt', 'revoked');
    }
    // fast-jwt's cache hands back the same claims object for a repeated token: build its principal once.
    let principal = principals.get(claims);
    if (principal === undefined) {
      if (typeof claims.sub !== 'string' || claims.sub.length === 0) fail(request, 'jwt', 'invalid_claims');
      principal = freezePrincipal({
        subject: claims.sub,
        scopes: typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [],
        kind: 'jwt',
        keyId: typeof claims.akid === 'string' ? claims.akid : null,
        tokenId: claims.jti,
      });
      principals.set(claims, principal);
    }
    checks.succeeded();
    return principal;
  }

  return {
    verify,

    /** The claims of a valid token; null for an invalid or expired one. */
    claimsOf(token: string): TokenClaims | null {
      try {
        return verifierFor(token)?.verify<TokenClaims>(token) ?? null;
      } catch {
        return null;
      }
    },

    issue(principal: Principal, scopes: string[]): IssuedToken {
      if (!signer) throw serviceUnavailable('This instance holds no signing key.', 60);
      const accessToken = signer.sign({
        sub: principal.subject,
        scope: scopes.join(' '),
        ...(principal.keyId ? { akid: principal.keyId } : {}),
        jti: randomUUID(),
      });
      return { accessToken, expiresIn: config.JWT_EXPIRES_IN, scopes };
    },
  };
}
