// Owns the item logic beyond CRUD: idempotent creation in one transaction, and the response shape.
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { HttpProblem } from '../../lib/problem.ts';
import { createItemsRepository, type ItemRow } from './items-repository.ts';
import type { CreateItemBody, Item } from './items-schemas.ts';

export const IDEMPOTENCY_TTL_HOURS = 24;

export function toItem(row: ItemRow): Item {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    tags: row.tags,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export const itemLocation = (id: string) => `/v1/items/${id}`;

export interface Created {
  item: Item;
  location: string;
  replayed: boolean;
}

/**
 * Creates an item. With an Idempotency-Key, the key is claimed in the same transaction as the insert:
 * a retry (on any instance) replays the stored response, a concurrent retry waits for the first to
 * finish, and the same key with another body is refused with 422.
 */
export async function createItem(
  pool: Pool,
  owner: string,
  body: CreateItemBody,
  idempotencyKey: string | undefined,
): Promise<Created> {
  if (idempotencyKey === undefined) {
    const row = await createItemsRepository(pool).insert(owner, body);
    return { item: toItem(row), location: itemLocation(row.id), replayed: false };
  }
  // The validated body, so equivalent JSON (other key order, whitespace) hashes the same.
  const requestHash = createHash('sha256').update(JSON.stringify(body)).digest();
  const client = await pool.connect();
  let broken: Error | undefined;
  // A checked-out client has no pool listener: without this, a connection dropped between two
  // statements (failover, pg_terminate_backend) would be an unhandled 'error' and crash the process.
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const repo = createItemsRepository(client);
    if (!(await repo.claimIdempotencyKey(owner, idempotencyKey, requestHash, IDEMPOTENCY_TTL_HOURS))) {
      const stored = await repo.findIdempotencyKey(owner, idempotencyKey);
      await client.query('ROLLBACK');
      if (stored === null || stored.response === null || stored.location === null) {
        throw new HttpProblem(409, 'conflict', 'Conflict', {
          detail: 'A request with this Idempotency-Key is in progress.',
        });
      }
      if (!stored.requestHash.equals(requestHash)) {
        throw new HttpProblem(422, 'idempotency-key-reused', 'Unprocessable Content', {
          detail: 'This Idempotency-Key was used with a different request body.',
        });
      }
      return { item: stored.response as Item, location: stored.location, replayed: true };
    }
    const row = await repo.insert(owner, body);
    const item = toItem(row);
    const location = itemLocation(row.id);
    await repo.completeIdempotencyKey(owner, idempotencyKey, 201, item, location);
    await client.query('COMMIT');
    return { item, location, replayed: false };
  } catch (err) {
    // Our own answers (409/422) leave the connection healthy; anything else may not have.
    if (!(err instanceof HttpProblem)) broken = err instanceof Error ? err : new Error(String(err));
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    // A connection that failed mid-transaction is destroyed, not returned to the pool.
    client.off('error', onError);
    client.release(broken);
  }
}
