// Owns the items table: parameterised SQL only.
import type { Queryable } from '../../plugins/postgres.ts';
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

const COLUMNS = `id, owner, name, description, tags, version, created_at::text AS "cursorAt",
  created_at AS "createdAt", updated_at AS "updatedAt"`;

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
  };
}
