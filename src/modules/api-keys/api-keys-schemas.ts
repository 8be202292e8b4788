// Owns the request and response shapes of the API key admin endpoints.
import { z } from 'zod';
import { Scopes, text } from '../../lib/validation.ts';

export const ApiKeyIdParams = z.strictObject({ id: z.string().regex(/^[0-9a-f]{16}$/, 'must be a key id') });

export const CreateApiKeyBody = z.strictObject({
  name: text(1, 100),
  /** The subject the key acts as; the caller's own subject by default. */
  subject: text(1, 200).optional(),
  scopes: Scopes.min(1),
  expiresInDays: z.number().int().min(1).max(3650).optional(),
});

export const ListApiKeysQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

export const ApiKey = z.object({
  id: z.string(),
  name: z.string(),
  subject: z.string(),
  scopes: z.array(z.string()),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});

export const CreatedApiKey = ApiKey.extend({
  /** The whole key: shown once, never stored or returned again. */
  key: z.string(),
});

export const ApiKeyList = z.object({ items: z.array(ApiKey), next: z.string().nullable() });
