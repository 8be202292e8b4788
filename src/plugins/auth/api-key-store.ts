// Owns the SQL authentication needs from api_keys: the row that verifies a key, batched last-used times.
import type { Pool } from 'pg';

export interface ApiKeyForVerification {
  id: string;
  subject: string;
  scopes: string[];
  secretHash: Buffer;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export function createApiKeyStore(db: Pool) {
  return {
    async findForVerification(id: string): Promise<ApiKeyForVerification | null> {
      const { rows } = await db.query<ApiKeyForVerification>(
        `SELECT id, subject, scopes, secret_hash AS "secretHash", expires_at AS "expiresAt",
           revoked_at AS "revokedAt"
         FROM api_keys WHERE id = $1`,
        [id],
      );
      return rows[0] ?? null;
    },

    /** One statement for every key used since the last flush (never one write per request). */
    async touchLastUsed(entries: { id: string; at: Date }[]): Promise<void> {
      if (entries.length === 0) return;
      await db.query(
        `UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, u.at)
         FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id`,
        [entries.map((e) => e.id), entries.map((e) => e.at)],
      );
    },
  };
}
