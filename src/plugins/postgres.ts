// Owns the PostgreSQL pool (app.db, app.withTransaction, request.db) and opening the database:
// DATABASE_URL or the embedded default, migrated on start; directly or through a transaction pooler.
import { readFileSync } from 'node:fs';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import type { Config } from '../config.ts';
import { isDatabaseUnavailable } from '../lib/db-errors.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../lib/embedded-postgres.ts';
import { migrate, serviceMigration, statementTimeoutSql } from '../lib/migrations.ts';
import { type Transaction, withTransaction } from '../lib/transaction.ts';

/** What a repository runs its statements on: the pool, or one transaction's connection. */
export type Queryable = pg.Pool | pg.PoolClient;

declare module 'fastify' {
  interface FastifyInstance {
    db: pg.Pool;
    /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
    withTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  }
  interface FastifyRequest {
    /**
     * Where this request's writes go: the transaction a plugin opened for it (an idempotent
     * route's, which commits with the stored response), else the pool.
     */
    readonly db: Queryable;
    /** Set by a plugin that wraps the request in a transaction (see plugins/idempotency.ts). */
    transaction: Transaction | null;
  }
}

function sslOptions(config: Config): pg.PoolConfig['ssl'] {
  switch (config.DATABASE_SSL) {
    case 'disable':
      return false;
    case 'require':
      // Encrypted, server identity not checked (libpq's sslmode=require).
      return { rejectUnauthorized: false };
    case 'verify-full':
      return {
        rejectUnauthorized: true,
        ...(config.DATABASE_SSL_CA_FILE ? { ca: readFileSync(config.DATABASE_SSL_CA_FILE, 'utf8') } : {}),
      };
  }
}

export function createPool(config: Config, connectionString: string): pg.Pool {
  return new pg.Pool({
    connectionString,
    max: config.DATABASE_POOL_MAX,
    connectionTimeoutMillis: config.DATABASE_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: config.DATABASE_IDLE_TIMEOUT_MS,
    // A startup parameter, which PgBouncer refuses ("unsupported startup parameter"): in transaction
    // mode the role's default in the database enforces it instead (set by the migrate step).
    ...(config.DATABASE_STATEMENT_TIMEOUT_MS > 0 && config.DATABASE_POOL_MODE === 'session'
      ? { statement_timeout: config.DATABASE_STATEMENT_TIMEOUT_MS }
      : {}),
    application_name: config.SERVICE_NAME,
    keepAlive: true,
    ssl: sslOptions(config),
  });
}

export interface Database {
  url: string;
  /** Set when this process started (or joined) the embedded default. */
  embedded?: EmbeddedPostgres;
}

/**
 * Opens the database before any plugin loads: the embedded default's start and the migrations
 * (MIGRATE_ON_START) can take longer on a slow, loaded machine than Fastify's plugin timeout allows.
 */
export async function openDatabase(
  config: Config,
  log: FastifyBaseLogger,
  migrationsDir?: string,
): Promise<Database> {
  let database: Database;
  if (config.DATABASE_URL !== undefined) database = { url: config.DATABASE_URL };
  else {
    // loadConfig already refuses this in production.
    const embedded = await startEmbeddedPostgres(config.EMBEDDED_DB_DIR, config.EMBEDDED_DB_PORT);
    database = { url: embedded.url, embedded };
    log.info(
      { dataDir: config.EMBEDDED_DB_DIR, url: embedded.url, joined: !embedded.owned },
      'using embedded postgres',
    );
  }
  if (config.MIGRATE_ON_START) {
    try {
      const applied = await migrate({
        // Direct: migrations hold a session advisory lock, which a transaction pooler cannot keep.
        ...serviceMigration(config, database.url),
        ...(migrationsDir ? { dir: migrationsDir } : {}),
        log: (m) => log.debug(m),
      });
      log.info({ applied }, 'migrations up to date');
    } catch (err) {
      if (database.embedded?.owned) await database.embedded.stop();
      throw err;
    }
  }
  return database;
}

/**
 * Transaction pooling: the statement timeout is the role's default in the database, which nothing
 * here sends. A missing or larger one refuses the start (every query could run unbounded); a
 * smaller one only warns. An unreachable database skips the check: readiness reports that.
 * (The pooler may answer on a server connection opened before the default was last changed.)
 */
export async function checkStatementTimeout(
  pool: pg.Pool,
  config: Config,
  log: FastifyBaseLogger,
): Promise<void> {
  const configured = config.DATABASE_STATEMENT_TIMEOUT_MS;
  if (config.DATABASE_POOL_MODE !== 'transaction' || configured === 0) return;
  let row: { role: string; database: string; ms: number };
  try {
    const { rows } = await pool.query<{ role: string; database: string; ms: number }>(
      `SELECT current_user AS role, current_database() AS database, setting::int AS ms
       FROM pg_settings WHERE name = 'statement_timeout'`,
    );
    row = rows[0] as { role: string; database: string; ms: number };
  } catch (err) {
    if (!isDatabaseUnavailable(err)) throw err;
    log.warn({ err }, 'statement_timeout not checked: the database is unreachable');
    return;
  }
  if (row.ms > 0 && row.ms <= configured) {
    if (row.ms < configured)
      log.warn(
        { effectiveMs: row.ms, configuredMs: configured },
        'statement_timeout through the pooler is shorter than DATABASE_STATEMENT_TIMEOUT_MS',
      );
    return;
  }
  throw new Error(
    `DATABASE_POOL_MODE=transaction: statement_timeout through DATABASE_URL is ${row.ms === 0 ? 'none (0)' : `${row.ms} ms`}` +
      ` for role ${row.role} in database ${row.database}, above DATABASE_STATEMENT_TIMEOUT_MS=${configured}.` +
      ' The pooler cannot pass it per connection: run `npm run migrate up` with DATABASE_POOL_MODE=transaction' +
      ` and MIGRATE_DATABASE_URL (it sets the role default), or run: ${statementTimeoutSql(row.role, row.database, configured)};` +
      ' then RECONNECT in the PgBouncer admin console so server connections pick it up',
  );
}

async function postgresPlugin(app: FastifyInstance, { database }: { database: Database }) {
  const pool = createPool(app.config, database.url);
  // An idle client dropped by the server emits here; without a listener it would crash the process.
  pool.on('error', (err) => app.log.warn({ err }, 'idle postgres connection failed'));
  try {
    await checkStatementTimeout(pool, app.config, app.log);
  } catch (err) {
    await pool.end();
    throw err;
  }
  app.decorate('db', pool);
  app.decorate('withTransaction', <T>(fn: (client: pg.PoolClient) => Promise<T>) =>
    withTransaction(pool, fn),
  );
  app.decorateRequest('transaction', null);
  app.decorateRequest('db', {
    getter(this: FastifyRequest): Queryable {
      return this.transaction?.client ?? pool;
    },
  });

  app.addHook('onClose', async () => {
    await pool.end();
    app.log.info('postgres pool closed');
    if (database.embedded?.owned) {
      await database.embedded.stop();
      app.log.info('embedded postgres stopped');
    }
  });
}

export default fp(postgresPlugin, { name: 'postgres' });
