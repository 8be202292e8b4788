// Owns the PostgreSQL pool (app.db, app.withTransaction, request.db) and opening the database:
// DATABASE_URL or the embedded default, migrated on start.
import { readFileSync } from 'node:fs';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import type { Config } from '../config.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../lib/embedded-postgres.ts';
import { migrate } from '../lib/migrations.ts';
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
    ...(config.DATABASE_STATEMENT_TIMEOUT_MS > 0
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
        databaseUrl: database.url,
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

async function postgresPlugin(app: FastifyInstance, { database }: { database: Database }) {
  const pool = createPool(app.config, database.url);
  // An idle client dropped by the server emits here; without a listener it would crash the process.
  pool.on('error', (err) => app.log.warn({ err }, 'idle postgres connection failed'));
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
