// Owns the PostgreSQL pool (app.db): real server from DATABASE_URL, or the embedded default; migrate on start.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import type { Config } from '../config.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../lib/embedded-postgres.js';
import { migrate } from '../lib/migrations.js';

declare module 'fastify' {
  interface FastifyInstance {
    db: pg.Pool;
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

async function postgresPlugin(app: FastifyInstance) {
  const { config } = app;
  let embedded: EmbeddedPostgres | undefined;
  let url = config.DATABASE_URL;
  if (url === undefined) {
    // loadConfig already refuses this in production.
    embedded = await startEmbeddedPostgres(config.EMBEDDED_DB_DIR, config.EMBEDDED_DB_PORT);
    url = embedded.url;
    app.log.info(
      { dataDir: config.EMBEDDED_DB_DIR, url, joined: !embedded.owned },
      'using embedded postgres',
    );
  }

  if (config.MIGRATE_ON_START) {
    const applied = await migrate({ databaseUrl: url, log: (m) => app.log.debug(m) });
    app.log.info({ applied }, 'migrations up to date');
  }

  const pool = createPool(config, url);
  // An idle client dropped by the server emits here; without a listener it would crash the process.
  pool.on('error', (err) => app.log.warn({ err }, 'idle postgres connection failed'));
  app.decorate('db', pool);

  app.addHook('onClose', async () => {
    await pool.end();
    app.log.info('postgres pool closed');
    if (embedded?.owned) {
      await embedded.stop();
      app.log.info('embedded postgres stopped');
    }
  });
}

export default fp(postgresPlugin, { name: 'postgres' });
