// Owns applying the SQL files in migrations/ with node-pg-migrate, under its advisory lock, and the
// role's statement_timeout default that transaction pooling relies on.
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Config } from '../config.ts';

/** migrations/ sits at the package root, one level above src/. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export interface MigrateOptions {
  databaseUrl: string;
  direction?: 'up' | 'down';
  /** How many to apply (up: all by default; down: one by default). */
  count?: number;
  dir?: string;
  log?: (message: string) => void;
  /**
   * Sets `statement_timeout` as this role's default in the migrated database (ALTER ROLE ... IN
   * DATABASE ... SET), after the migrations: behind a transaction pooler the service cannot send it
   * as a startup parameter. See roleStatementTimeout.
   */
  roleStatementTimeout?: RoleStatementTimeout;
}

export interface RoleStatementTimeout {
  role: string;
  ms: number;
}

/** The role a connection URL logs in as, resolved as pg resolves it (PGUSER, then the OS user). */
export function urlRole(url: string): string {
  return new pg.Client({ connectionString: url }).user ?? 'postgres';
}

/**
 * What the migrate step must set for the service to keep its statement timeout: only with
 * DATABASE_POOL_MODE=transaction and a timeout, for DATABASE_URL's role.
 */
export function roleStatementTimeout(config: Config, databaseUrl: string): RoleStatementTimeout | undefined {
  if (config.DATABASE_POOL_MODE !== 'transaction' || config.DATABASE_STATEMENT_TIMEOUT_MS === 0)
    return undefined;
  return { role: urlRole(databaseUrl), ms: config.DATABASE_STATEMENT_TIMEOUT_MS };
}

/**
 * The service's own migration of `databaseUrl` (DATABASE_URL or the embedded default): over
 * MIGRATE_DATABASE_URL when set (direct, for the session lock), setting the role's statement timeout
 * when pooling by transaction. The migrate command, MIGRATE_ON_START and the auth CLI all run this.
 */
export function serviceMigration(
  config: Config,
  databaseUrl: string,
): Pick<MigrateOptions, 'databaseUrl' | 'roleStatementTimeout'> {
  const timeout = roleStatementTimeout(config, databaseUrl);
  return {
    databaseUrl: config.MIGRATE_DATABASE_URL ?? databaseUrl,
    ...(timeout ? { roleStatementTimeout: timeout } : {}),
  };
}

/** The statement that sets the role default, for the start-up check's message and for operators. */
export function statementTimeoutSql(role: string, database: string, ms: number): string {
  return `ALTER ROLE ${pg.escapeIdentifier(role)} IN DATABASE ${pg.escapeIdentifier(database)} SET statement_timeout = '${ms}ms'`;
}

/**
 * Sets the default unless it is set already. Under a transaction-scoped advisory lock: replicas
 * migrating together would otherwise update the same pg_db_role_setting row at once ("tuple
 * concurrently updated"). Session defaults apply to new server connections only: a pooler's
 * existing ones keep the old value until they are replaced (server_lifetime, or RECONNECT).
 */
async function setRoleStatementTimeout(
  client: pg.Client,
  { role, ms }: RoleStatementTimeout,
  log: (message: string) => void,
): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('api: role statement_timeout'))`);
    const { rows } = await client.query<{ database: string; current: string[] | null }>(
      `SELECT current_database() AS database,
              (SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                WHERE d.datname = current_database() AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1)
              ) AS current`,
      [role],
    );
    const { database, current } = rows[0] as { database: string; current: string[] | null };
    const wanted = `statement_timeout=${ms}ms`;
    if (current?.includes(wanted)) {
      await client.query('COMMIT');
      return;
    }
    await client.query(statementTimeoutSql(role, database, ms));
    await client.query('COMMIT');
    log(`statement_timeout for role ${role} in database ${database}: ${ms}ms`);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    // Ordinary roles may set only their own defaults: MIGRATE_DATABASE_URL logs in as another role.
    if ((err as { code?: string }).code === '42501')
      throw new Error(
        `cannot set role ${role}'s statement_timeout default as MIGRATE_DATABASE_URL's role (${(err as Error).message}): migrate as ${role}, or have a superuser run ${statementTimeoutSql(role, '<database>', ms)}`,
      );
    throw err;
  }
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
    // Migrations are not bound by the service's statement timeout, which may be this role's default
    // in the database (transaction pooling): a long index build must not be cancelled after 5 s.
    await client.query('SET statement_timeout = 0');
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
    if (options.roleStatementTimeout)
      await setRoleStatementTimeout(client, options.roleStatementTimeout, log);
    return applied.map((m) => m.name);
  } finally {
    await client.end();
  }
}
