// Credentials for tests: API keys written through the real service code, tokens signed like an attacker would.
import { randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { createApiKeysRepository } from '../../src/modules/api-keys/api-keys-repository.ts';
import { issueApiKey } from '../../src/modules/api-keys/api-keys-service.ts';
import type { Scope } from '../../src/scopes.ts';

export async function createKey(
  app: FastifyInstance,
  scopes: Scope[],
  options: { subject?: string; expiresAt?: Date | null } = {},
): Promise<{ id: string; key: string }> {
  const { row, key } = await issueApiKey(createApiKeysRepository(app.db), app.config.API_KEY_PREFIX, {
    name: 'test',
    subject: options.subject ?? `user-${randomUUID().slice(0, 8)}`,
    scopes,
    expiresAt: options.expiresAt ?? null,
  });
  return { id: row.id, key };
}

/** Signs arbitrary claims with the app's HS256 secret (or any key), bypassing the service's own issuer. */
export function signToken(
  app: FastifyInstance,
  claims: Record<string, unknown>,
  options: { key?: string; algorithm?: string; header?: Record<string, unknown>; noDefaults?: boolean } = {},
): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = options.noDefaults
    ? claims
    : {
        sub: 'alice',
        scope: 'openid',
        jti: randomUUID(),
        iss: app.config.JWT_ISSUER,
        aud: app.config.JWT_AUDIENCE,
        iat: now,
        exp: now + 300,
        ...claims,
      };
  const sign = createSigner({
    key: options.key ?? (app.config.JWT_SECRET as string),
    algorithm: (options.algorithm ?? 'HS256') as 'HS256',
    noTimestamp: true,
    ...(options.header ? { header: options.header as { alg: string } } : {}),
  });
  return sign(payload);
}

/** An unsigned `alg: none` token, as an attacker would hand-craft it. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
}
