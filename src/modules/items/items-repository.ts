// Owns the items and idempotency_keys tables: parameterised SQL only.
import type { Pool, PoolClient } from 'pg';
import type { CreateItemBody, UpdateItemBody } from './items-schemas.ts';

export interface ItemRow {
  id: string;
  owner: string;
  name: string;
  description: string | null;
  tags: string[];
  version: number;
  /** created_at as Postgres text (microseconds) for cursors. */
  cursorAt: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface StoredResponse {
  requestHash: Buffer;
  statusCode: number | null;
  response: unknown;
  location: string | null;
}

const COLUMNS = `id, owner, name, description, tags, version, created_at::text AS "cursorAt",
  created_at AS "createdAt", updated_at AS "updatedAt"`;

type Queryable = Pool | PoolClient;

export function createItemsRepository(db: Queryable) {
  return {
    async insert(owner: string, input: CreateItemBody): Promise<ItemRow> {
      const { rows } = await db.query<ItemRow>(
        `INSERT INTO items (owner, name, description, tags) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
        [owner, input.name, input.description ?? null, input.tags ?? []],
      );
      return rows[0] as ItemRow;
    },

    async findById(owner: string, id: string): Promise<ItemRow | null> {
      const { rows } = await db.query<ItemRow>(`SELECT ${COLUMNS} FROM items WHERE id = $1 AND owner = $2`, [
        id,
        owner,
      ]);
      return rows[0] ?? null;
    },

    async list(
      owner: string,
      options: {
        limit: number;
        order: 'newest' | 'oldest';
        after?: { cursorAt: string; id: string };
        tag?: string;
        namePrefix?: string;
      },
    ): Promise<ItemRow[]> {
      const params: unknown[] = [owner];
      const where = ['owner = $1'];
      if (options.tag !== undefined) {
        params.push([options.tag]);
        where.push(`tags @> $${params.length}::text[]`);
      }
      if (options.namePrefix !== undefined) {
        params.push(options.namePrefix);
        where.push(`starts_with(name, $${params.length})`);
      }
      const newest = options.order === 'newest';
      if (options.after) {
        params.push(options.after.cursorAt, options.after.id);
        where.push(
          `(created_at, id) ${newest ? '<' : '>'} ($${params.length - 1}::timestamptz, $${params.length}::uuid)`,
        );
      }
      params.push(options.limit);
      const direction = newest ? 'DESC' : 'ASC';
      const { rows } = await db.query<ItemRow>(
        `SELECT ${COLUMNS} FROM items WHERE ${where.join(' AND ')}
         ORDER BY created_at ${direction}, id ${direction} LIMIT $${params.length}`,
        params,
      );
      return rows;
    },

    /** Applies the patch when the version matches (or none is expected); null when no row qualified. */
    async update(
      owner: string,
      id: string,
      patch: UpdateItemBody,
      expectedVersion?: number,
    ): Promise<ItemRow | null> {
      const { rows } = await db.query<ItemRow>(
        `UPDATE items SET
           name = COALESCE($3, name),
           description = CASE WHEN $4::boolean THEN $5 ELSE description END,
           tags = COALESCE($6, tags),
           version = version + 1,
           updated_at = now()
         WHERE id = $1 AND owner = $2 AND ($7::integer IS NULL OR version = $7)
         RETURNING ${COLUMNS}`,
        [
          id,
          owner,
          patch.name ?? null,
          patch.description !== undefined,
          patch.description ?? null,
          patch.tags ?? null,
          expectedVersion ?? null,
        ],
      );
      return rows[0] ?? null;
    },

    async delete(owner: string, id: string, expectedVersion?: number): Promise<boolean> {
      const { rowCount } = await db.query(
        'DELETE FROM items WHERE id = $1 AND owner = $2 AND ($3::integer IS NULL OR version = $3)',
        [id, owner, expectedVersion ?? null],
      );
      return rowCount === 1;
    },

    async exists(owner: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query('SELECT 1 FROM items WHERE id = $1 AND owner = $2', [id, owner]);
      return rowCount === 1;
    },

    /**
     * Claims (owner, key) for this request. A concurrent claim of the same key waits on the unique
     * index until the first transaction ends, then sees its stored response. Expired keys are reclaimed.
     */
    async claimIdempotencyKey(
      owner: string,
      key: string,
      requestHash: Buffer,
      ttlHours: number,
    ): Promise<boolean> {
      const { rowCount } = await db.query(
        `INSERT INTO idempotency_keys (owner, key, request_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))
         ON CONFLICT (owner, key) DO UPDATE SET
           request_hash = EXCLUDED.request_hash, status_code = NULL, response = NULL, location = NULL,
           created_at = now(), expires_at = EXCLUDED.expires_at
         WHERE idempotency_keys.expires_at < now()`,
        [owner, key, requestHash, ttlHours],
      );
      return rowCount === 1;
    },

    async findIdempotencyKey(owner: string, key: string): Promise<StoredResponse | null> {
      const { rows } = await db.query<StoredResponse>(
        `SELECT request_hash AS "requestHash", status_code AS "statusCode", response, location
         FROM idempotency_keys WHERE owner = $1 AND key = $2`,
        [owner, key],
      );
      return rows[0] ?? null;
    },

    async completeIdempotencyKey(
      owner: string,
      key: string,
      statusCode: number,
      response: unknown,
      location: string,
    ) {
      await db.query(
        'UPDATE idempotency_keys SET status_code = $3, response = $4, location = $5 WHERE owner = $1 AND key = $2',
        [owner, key, statusCode, JSON.stringify(response), location],
      );
    },

    async deleteExpiredIdempotencyKeys(): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM idempotency_keys WHERE expires_at < now()');
      return rowCount ?? 0;
    },
  };
}
