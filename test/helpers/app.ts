// Builds the real app over a fresh database cloned from the migrated template and a private Redis prefix.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { inject } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import { databaseUrl, TEST_PG_ADMIN_URL, TEST_REDIS_URL } from './env.ts';

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file (or one test). */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const name = `t_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await admin.connect();
  try {
    const template = options.migrated === false ? 'template0' : inject('templateDatabase');
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: databaseUrl(name),
    async drop() {
      const c = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Deletes every key under a prefix (ioredis keyPrefix does not apply to SCAN patterns). */
export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const client = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await client.del(...keys);
  } while (cursor !== '0');
  await client.quit();
}

export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void) {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    cb();
  }
  text(): string {
    return this.raw.join('\n');
  }
}

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  logs: LogCapture;
  db: TestDatabase;
  redisPrefix: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Extra or overriding environment variables. */
  env?: Record<string, string | undefined>;
  /** Use Redis (default true). */
  redis?: boolean;
  /** Share an existing database (several instances of one deployment). */
  db?: TestDatabase;
  /** Share a Redis prefix with another instance. */
  redisPrefix?: string;
  /** Register extra routes before the app is ready (test-only routes). */
  extend?: (app: FastifyInstance) => void | Promise<void>;
}

export function testEnv(
  db: TestDatabase,
  redisPrefix: string,
  options: TestAppOptions,
): Record<string, string> {
  const env: Record<string, string | undefined> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
    DATABASE_URL: db.url,
    MIGRATE_ON_START: 'false',
    // The suite shares two cores with image builds and a dozen servers: a connection that takes
    // longer than production's 2 s to open there is load, not a fault under test.
    DATABASE_CONNECT_TIMEOUT_MS: '10000',
    REDIS_KEY_PREFIX: redisPrefix,
    ...(options.redis === false ? {} : { REDIS_URL: TEST_REDIS_URL }),
    ...options.env,
  };
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

export async function buildTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const ownDb = options.db === undefined;
  const db = options.db ?? (await createTestDatabase());
  const redisPrefix = options.redisPrefix ?? `test:${randomBytes(4).toString('hex')}:`;
  const config = loadConfig(testEnv(db, redisPrefix, options));
  const logs = new LogCapture();
  const app = await buildApp(config, { logStream: logs });
  if (options.extend) await options.extend(app);
  await app.ready();
  return {
    app,
    config,
    logs,
    db,
    redisPrefix,
    async close() {
      await app.close();
      if (ownDb) await db.drop();
      if (options.redisPrefix === undefined && options.redis !== false) await deleteRedisPrefix(redisPrefix);
    },
  };
}

export interface Deployment {
  instances: TestApp[];
  db: TestDatabase;
  redisPrefix: string;
  close(): Promise<void>;
}

/** Where a deployment's instances find Redis and Postgres: one Redis and direct Postgres by default. */
export interface Topology {
  /** Environment for every instance over `db` (set a variable to undefined to unset it). */
  env(db: TestDatabase): Record<string, string | undefined>;
  /** Every key matching a pattern, with its time to live in ms. */
  keys(pattern: string): Promise<{ key: string; pttl: number }[]>;
  /** Deletes every key under a prefix. */
  deletePrefix(prefix: string): Promise<void>;
}

export const SINGLE_REDIS: Topology = {
  env: () => ({}),
  async keys(pattern) {
    const client = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const keys = await client.keys(pattern);
      return Promise.all(keys.map(async (key) => ({ key, pttl: await client.pttl(key) })));
    } finally {
      client.disconnect();
    }
  },
  deletePrefix: deleteRedisPrefix,
};

/** N instances of one deployment: one database, one Redis prefix, as replicas behind a load balancer. */
export async function buildDeployment(
  count: number,
  options: TestAppOptions & { topology?: Topology } = {},
): Promise<Deployment> {
  const { topology = SINGLE_REDIS, ...appOptions } = options;
  const db = await createTestDatabase();
  const redisPrefix = `test:${randomBytes(4).toString('hex')}:`;
  const env = { ...topology.env(db), ...appOptions.env };
  const instances: TestApp[] = [];
  const close = async () => {
    for (const instance of instances) await instance.close();
    await db.drop();
    await topology.deletePrefix(redisPrefix);
  };
  try {
    for (let i = 0; i < count; i++)
      instances.push(await buildTestApp({ ...appOptions, env, db, redisPrefix }));
  } catch (err) {
    await close();
    throw err;
  }
  return { instances, db, redisPrefix, close };
}
