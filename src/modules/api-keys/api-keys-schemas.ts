// Owns the request and response shapes of the API key admin endpoints (bodies and responses named for
// the OpenAPI document's components).
import { z } from 'zod';
import { Scopes, text, timestamp } from '../../lib/validation.ts';

const KeyId = z
  .string()
  .max(16)
  .regex(/^[0-9a-f]{16}$/, 'must be a key id');

export const ApiKeyIdParams = z.strictObject({ id: KeyId });

export const CreateApiKeyBody = z
  .strictObject({
    name: text(1, 100),
    /** The subject the key acts as; the caller's own subject by default. */
    subject: text(1, 200).optional().describe("The subject the key acts as; the caller's own by default."),
    scopes: Scopes.min(1),
    expiresInDays: z.int().min(1).max(3650).optional().describe('Never expires when absent.'),
  })
  .meta({ id: 'CreateApiKey' });

export const ListApiKeysQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

const Scope = z.string().max(100);
const nullableTimestamp = timestamp.nullable();

export const ApiKey = z
  .object({
    id: KeyId,
    name: z.string().max(100),
    subject: z.string().max(200),
    scopes: z.array(Scope).max(50),
    createdAt: timestamp,
    expiresAt: nullableTimestamp,
    lastUsedAt: nullableTimestamp,
    revokedAt: nullableTimestamp,
  })
  .meta({ id: 'ApiKey' });

export const CreatedApiKey = ApiKey.extend({
  /** The whole key: shown once, never stored or returned again. */
  key: z.string().max(200).describe('The whole key: shown this once, never stored or returned again.'),
}).meta({ id: 'CreatedApiKey' });

export const ApiKeyList = z
  .object({
    items: z.array(ApiKey).max(100),
    next: z.string().max(200).nullable().describe('The cursor of the next page; null on the last one.'),
  })
  .meta({ id: 'ApiKeyList' });
