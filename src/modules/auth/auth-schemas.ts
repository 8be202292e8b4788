// Owns the request and response shapes of /v1/me and the token endpoints.
import { z } from 'zod';
import { Scopes } from '../../lib/validation.ts';

export const Me = z.object({
  subject: z.string(),
  scopes: z.array(z.string()),
  kind: z.enum(['api_key', 'jwt']),
  keyId: z.string().nullable(),
});

export const TokenBody = z.strictObject({ scopes: Scopes.optional() }).optional();

/** OAuth 2.0 (RFC 6749 section 5.1) field names, which client libraries already understand. */
export const TokenResponse = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.number().int(),
  scope: z.string(),
});

export const RevokeBody = z.strictObject({ token: z.string().min(1).max(16_384) });
export const RevokeResponse = z.object({ revoked: z.boolean() });
