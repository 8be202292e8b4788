// Owns the bench's private world: its own database, its own Redis key prefix, credentials, and server env.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { CONFIG_KEYS, SECRET_KEYS } from '../../src/config.ts';
import type { Cleanup } from './cleanup.ts';
import { REPO_ROOT } from './server-process.ts';
import { type SourceSnapshot, snapshotSource } from './snapshot.ts';

/** Where the admin connections go; overridable for another machine, never pointed off-host by default. */
export const PG_ADMIN_URL = process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Limits for every server except the rate-limit scenario's: 1,000,000 per second (the largest
 * RATE_LIMIT_MAX_REQUESTS the config accepts, so 429s never happen) while the limiter still runs,
 * and still decides, on every request.
 */
export const UNLIMITED = { RATE_LIMIT_MAX_REQUESTS: '1000000', RATE_LIMIT_WINDOW_MS: '1000' };

export interface ServerEnvOptions {
  port: number;
  /** Short name: the server's Redis keys live under `<root prefix><name>:`. */
  name: string;
  /** false: no REDIS_URL, so the limiter and the cache use their in-memory stores. */
  redis?: boolean;
  extra?: Record<string, string>;
}

export interface BenchEnv {
  /** The private copy of the source every server and CLI of this tree runs from. */
  source: SourceSnapshot;
  databaseName: string;
  databaseUrl: string;
  /** Every key this run writes starts with this; deleted at the end. */
  redisRoot: string;
  jwtSecret: string;
  apiKey: string;
  jwt: string;
  /** An admin client without key prefix: INFO, MEMORY USAGE, filler keys, cleanup. */
  redis: Redis;
  serverEnv(options: ServerEnvOptions): NodeJS.ProcessEnv;
  redisPrefix(name: string): string;
}

/**
 * The inherited environment minus everything the service reads (a developer's shell or .env must not
 * leak into a measurement) and minus NODE_OPTIONS (a developer's flags must not ride along).
 */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of CONFIG_KEYS) delete env[key];
  for (const key of SECRET_KEYS) delete env[`${key}_FILE`];
  delete env.NODE_OPTIONS;
  return env;
}

export function runNode(
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string = REPO_ROOT,
  timeoutMs = 60_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd, env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

/** UNLINKs every key under a prefix (SCAN + non-blocking delete; never FLUSHDB: Redis is shared). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 10_000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

export async function createBenchEnv(cleanup: Cleanup, options: { jwtExpiresIn: string }): Promise<BenchEnv> {
  const source = snapshotSource(cleanup);
  const id = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const databaseName = `bench_${id}`;
  const redisRoot = `bench:${process.pid}:`;
  const jwtSecret = randomBytes(48).toString('base64url');

  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2000 });
  await redis.connect();
  cleanup.add('close admin Redis client', () => {
    redis.disconnect();
  });
  // Registered before anything is written, so a failure halfway still removes what was written.
  cleanup.add(`delete Redis keys ${redisRoot}*`, async () => {
    const n = await deletePrefix(redis, redisRoot);
    process.stderr.write(`cleanup: deleted ${n} Redis keys under ${redisRoot}\n`);
  });

  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${databaseName}"`);
  } finally {
    await admin.end();
  }
  cleanup.add(`drop database ${databaseName}`, async () => {
    const c = new pg.Client({ connectionString: PG_ADMIN_URL });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS "${databaseName}" WITH (FORCE)`);
    } finally {
      await c.end();
    }
    process.stderr.write(`cleanup: dropped database ${databaseName}\n`);
  });
  const adminUrl = new URL(PG_ADMIN_URL);
  adminUrl.pathname = `/${databaseName}`;
  const databaseUrl = adminUrl.toString();

  const redisPrefix = (name: string) => `${redisRoot}${name}:`;
  const serverEnv = (o: ServerEnvOptions): NodeJS.ProcessEnv => ({
    ...baseEnv(),
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(o.port),
    DATABASE_URL: databaseUrl,
    ...(o.redis === false ? {} : { REDIS_URL }),
    REDIS_KEY_PREFIX: redisPrefix(o.name),
    JWT_SECRET: jwtSecret,
    LOG_LEVEL: 'info',
    LOG_PRETTY: 'false',
    SHUTDOWN_DELAY_MS: '0',
    MIGRATE_ON_START: 'false',
    ...UNLIMITED,
    ...o.extra,
  });

  // Schema once, from the CLI, so server start-up is measured without migrations. The --baseline build
  // shares this database: its migrations/ are the same set.
  const cliEnv = serverEnv({ port: 0, name: 'cli' });
  await runNode(['src/cli/migrate.ts', 'up'], cliEnv, source.root);
  const apiKey = await runNode(
    ['src/cli/auth.ts', 'create-api-key', '--name', 'bench', '--scopes', 'items:read,items:write'],
    cliEnv,
    source.root,
  );
  const jwt = await runNode(
    [
      'src/cli/auth.ts',
      'generate-jwt-token',
      '--sub',
      'bench',
      '--scopes',
      'items:read,items:write',
      '--expires-in',
      options.jwtExpiresIn,
    ],
    cliEnv,
    source.root,
  );
  if (!/^sk_[0-9a-f]{16}_/.test(apiKey)) throw new Error(`unexpected API key output: ${apiKey.slice(0, 20)}`);
  if (jwt.split('.').length !== 3) throw new Error('unexpected JWT output');

  return {
    source,
    databaseName,
    databaseUrl,
    redisRoot,
    jwtSecret,
    apiKey,
    jwt,
    redis,
    serverEnv,
    redisPrefix,
  };
}

/** Per-command totals from INFO commandstats, e.g. evalsha (the limiter's Lua script). */
export async function commandStats(redis: Redis): Promise<Record<string, { calls: number; usec: number }>> {
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) out[m[1] as string] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

export async function usedMemory(redis: Redis): Promise<number> {
  const m = /^used_memory:(\d+)/m.exec(await redis.info('memory'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Writes `count` keys `<prefix><i>` with a TTL in pipelined batches (never one round trip per key). */
export async function fillKeys(
  redis: Redis,
  prefix: string,
  count: number,
  value: string,
  ttlMs: number,
): Promise<void> {
  const BATCH = 10_000;
  for (let i = 0; i < count; i += BATCH) {
    const p = redis.pipeline();
    for (let j = i; j < Math.min(count, i + BATCH); j++) p.set(`${prefix}${j}`, value, 'PX', ttlMs);
    const results = await p.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed) throw failed[0] as Error;
  }
}

/** Removes the keys fillKeys wrote, by name (no SCAN over a million keys). */
export async function unfillKeys(redis: Redis, prefix: string, count: number): Promise<void> {
  const BATCH = 10_000;
  for (let i = 0; i < count; i += BATCH) {
    const keys: string[] = [];
    for (let j = i; j < Math.min(count, i + BATCH); j++) keys.push(`${prefix}${j}`);
    await redis.unlink(...keys);
  }
}
