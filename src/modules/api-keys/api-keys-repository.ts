// Owns the api_keys table: parameterised SQL only.
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

export interface ApiKeyWithHash extends ApiKeyRow {
  secretHash: Buffer;
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

    /** For verification: includes the hash. */
    async findForVerification(id: string): Promise<ApiKeyWithHash | null> {
      const { rows } = await db.query<ApiKeyWithHash>(
        `SELECT ${COLUMNS}, secret_hash AS "secretHash" FROM api_keys WHERE id = $1`,
        [id],
      );
      return rows[0] ?? null;
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

export type ApiKeysRepository = ReturnType<typeof createApiKeysRepository>;
