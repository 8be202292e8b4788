// Owns running statements in one Postgres transaction on a pooled connection, and giving it back safely.
import type { Pool, PoolClient } from 'pg';

export interface Transaction {
  client: PoolClient;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/**
 * BEGIN on a connection of its own. commit() or rollback() ends the transaction and returns the
 * connection to the pool; a connection that failed on the way is destroyed instead of reused.
 */
export async function beginTransaction(pool: Pool): Promise<Transaction> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // A checked-out client has no pool listener: without this, a connection dropped between two
  // statements (failover, pg_terminate_backend) would be an unhandled 'error' and crash the process.
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  let ended = false;
  const end = async (statement: 'COMMIT' | 'ROLLBACK') => {
    if (ended) return;
    ended = true;
    try {
      await client.query(statement);
    } catch (err) {
      broken ??= err instanceof Error ? err : new Error(String(err));
      if (statement === 'COMMIT') throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  };
  try {
    await client.query('BEGIN');
  } catch (err) {
    ended = true;
    client.off('error', onError);
    client.release(err instanceof Error ? err : true);
    throw err;
  }
  return { client, commit: () => end('COMMIT'), rollback: () => end('ROLLBACK') };
}

/** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const tx = await beginTransaction(pool);
  let result: T;
  try {
    result = await fn(tx.client);
  } catch (err) {
    await tx.rollback();
    throw err;
  }
  await tx.commit();
  return result;
}
