// Owns the admin SQL of the api_keys table (insert, list, revoke); verification's is in plugins/auth/.
import type { Pool } from 'pg';

export interface ApiKeyRow {
  id: string;
  /** created_at in Postgres' own text form: full microsecond precision, for keyset cursors. */
  cursorAt: string;
  name: string;
  subject: string;
  scopes: string[];
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const COLUMNS = `id, created_at::text AS "cursorAt", name, subject, scopes, created_at AS "createdAt", expires_at AS "expiresAt",
  last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"`;

export function createApiKeysRepository(db: Pool) {
  return {
    async insert(key: {
      id: string;
      name: string;
      subject: string;
      scopes: string[];
      secretHash: Buffer;
      expiresAt: Date | null;
    }): Promise<ApiKeyRow> {
      const { rows } = await db.query<ApiKeyRow>(
        `INSERT INTO api_keys (id, name, subject, scopes, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
        [key.id, key.name, key.subject, key.scopes, key.secretHash, key.expiresAt],
      );
      return rows[0] as ApiKeyRow;
    },

    /** Newest first; keyset pagination on (created_at, id). */
    async list(options: { limit: number; before?: { cursorAt: string; id: string } }): Promise<ApiKeyRow[]> {
      const { rows } = options.before
        ? await db.query<ApiKeyRow>(
            `SELECT ${COLUMNS} FROM api_keys WHERE (created_at, id) < ($1::timestamptz, $2)
             ORDER BY created_at DESC, id DESC LIMIT $3`,
            [options.before.cursorAt, options.before.id, options.limit],
          )
        : await db.query<ApiKeyRow>(
            `SELECT ${COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC LIMIT $1`,
            [options.limit],
          );
      return rows;
    },

    /** Returns the key when it was active and is now revoked; null when unknown or already revoked. */
    async revoke(id: string): Promise<ApiKeyRow | null> {
      const { rows } = await db.query<ApiKeyRow>(
        `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
        [id],
      );
      return rows[0] ?? null;
    },
  };
}

export type ApiKeysRepository = ReturnType<typeof createApiKeysRepository>;
