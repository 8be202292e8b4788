// Owns applying the SQL files in migrations/ with node-pg-migrate, under its advisory lock.
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** migrations/ sits at the package root, one level above src/. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export interface MigrateOptions {
  databaseUrl: string;
  direction?: 'up' | 'down';
  /** How many to apply (up: all by default; down: one by default). */
  count?: number;
  dir?: string;
  log?: (message: string) => void;
}

/**
 * Applies pending migrations in one transaction. Concurrent runners (replicas starting together)
 * queue on the advisory lock instead of failing or applying a file twice.
 */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  const direction = options.direction ?? 'up';
  const log = options.log ?? (() => {});
  // Loaded on demand: ~100 ms of module loading that production replicas (MIGRATE_ON_START=false) never pay.
  const { runner } = await import('node-pg-migrate');
  // Our own client, ended (and awaited) here: node-pg-migrate does not await closing its own, so a
  // caller that drops or stops the database right after would see that connection fail unhandled.
  const client = new pg.Client({ connectionString: options.databaseUrl });
  client.on('error', (err) => log(`migration connection: ${err.message}`));
  await client.connect();
  try {
    const applied = await runner({
      dbClient: client,
      dir: options.dir ?? MIGRATIONS_DIR,
      migrationsTable: 'pgmigrations',
      direction,
      count: options.count ?? (direction === 'up' ? Number.POSITIVE_INFINITY : 1),
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      logger: { debug: () => {}, info: log, warn: log, error: log },
    });
    return applied.map((m) => m.name);
  } finally {
    await client.end();
  }
}
