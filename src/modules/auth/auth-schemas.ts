// Owns the request and response shapes of /v1/me and the token endpoints (named for the OpenAPI document).
import { z } from 'zod';
import { Scopes } from '../../lib/validation.ts';

/** What a verified token can carry is bounded by its size (JWT_MAX_TOKEN_BYTES, at most 16 KiB). */
const TOKEN_MAX = 16_384;

export const Me = z
  .object({
    subject: z.string().max(TOKEN_MAX),
    scopes: z.array(z.string().max(TOKEN_MAX)).max(TOKEN_MAX / 2),
    kind: z.enum(['api_key', 'jwt']),
    keyId: z.string().max(TOKEN_MAX).nullable().describe('The API key, or the key a token was minted from.'),
  })
  .meta({ id: 'Me', description: 'The caller, as the credential presents it.' });

export const TokenBody = z
  .strictObject({
    scopes: Scopes.optional().describe("The scopes the token carries: all of the key's when absent."),
  })
  .meta({ id: 'TokenRequest' })
  .optional();

/** OAuth 2.0 (RFC 6749 section 5.1) field names, which client libraries already understand. */
export const TokenResponse = z
  .object({
    access_token: z.string().max(TOKEN_MAX),
    token_type: z.literal('Bearer'),
    expires_in: z.int().min(1).max(86_400).describe('Seconds until the token expires.'),
    scope: z.string().max(TOKEN_MAX).describe('The scopes granted, space-separated.'),
  })
  .meta({ id: 'Token' });

export const RevokeBody = z
  .strictObject({ token: z.string().min(1).max(TOKEN_MAX) })
  .meta({ id: 'RevokeToken' });
export const RevokeResponse = z
  .object({ revoked: z.boolean().describe('False when the token was already invalid or expired.') })
  .meta({ id: 'RevokeResult' });

/** A public key of the service's (RFC 7517): RSA members n and e, or EC members crv, x and y. */
const Jwk = z
  .looseObject({
    kty: z.enum(['RSA', 'EC']),
    kid: z.string().max(200),
    alg: z.enum(['RS256', 'ES256']),
    use: z.literal('sig'),
    n: z.string().max(2048).optional(),
    e: z.string().max(16).optional(),
    crv: z.string().max(16).optional(),
    x: z.string().max(128).optional(),
    y: z.string().max(128).optional(),
  })
  .meta({ id: 'Jwk' });

export const Jwks = z
  .object({ keys: z.array(Jwk).max(100) })
  .meta({ id: 'Jwks', description: 'The public keys that verify this service’s tokens (RFC 7517 key set).' });
