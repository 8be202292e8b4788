// Owns issuing an API key (shared by the admin endpoint and the CLI) and its response shape.
import { generateApiKey } from '../../lib/api-key.ts';
import type { Scope } from '../../scopes.ts';
import type { ApiKeyRow, ApiKeysRepository } from './api-keys-repository.ts';

export interface NewApiKey {
  name: string;
  subject: string;
  scopes: Scope[];
  expiresAt: Date | null;
}

export async function issueApiKey(
  repo: ApiKeysRepository,
  prefix: string,
  input: NewApiKey,
): Promise<{ row: ApiKeyRow; key: string }> {
  const generated = generateApiKey(prefix);
  const row = await repo.insert({
    id: generated.id,
    name: input.name,
    subject: input.subject,
    scopes: [...new Set(input.scopes)],
    secretHash: generated.secretHash,
    expiresAt: input.expiresAt,
  });
  return { row, key: generated.key };
}

export function toApiKeyDto(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    subject: row.subject,
    scopes: row.scopes,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
  };
}
