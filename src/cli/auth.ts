// `npm run auth:<command>`: create-api-key, revoke-api-key, generate-jwt-secret, generate-jwt-token.
import { randomBytes, randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import pg from 'pg';
import { loadConfig, loadDotEnv } from '../config.ts';
import { loadJwtKeys } from '../lib/jwt-keys.ts';
import { migrate, serviceMigration } from '../lib/migrations.ts';
import { createRedisClient, publish } from '../lib/redis-client.ts';
import { createApiKeysRepository } from '../modules/api-keys/api-keys-repository.ts';
import { issueApiKey } from '../modules/api-keys/api-keys-service.ts';
import { createAuditRepository } from '../plugins/auth/audit.ts';
import { isScope, SCOPES, type Scope } from '../scopes.ts';
import { cliContext, fail, parseArgs } from './cli-context.ts';

const USAGE = `usage:
  npm run auth:create-api-key -- --name <name> --scopes a,b [--subject <sub>] [--expires-in-days N]
  npm run auth:revoke-api-key -- <id>
  npm run auth:generate-jwt-secret
  npm run auth:generate-jwt-token -- --sub <subject> --scopes a,b [--expires-in 15m]`;

function scopesArg(value: string | undefined): Scope[] {
  const scopes: Scope[] = [];
  for (const raw of (value ?? '').split(',')) {
    const s = raw.trim();
    if (s === '') continue;
    if (!isScope(s)) fail(`unknown scope: ${s} (known: ${SCOPES.join(', ')})`, 2);
    scopes.push(s);
  }
  if (scopes.length === 0) fail(`--scopes is required\n${USAGE}`, 2);
  return scopes;
}

async function withDatabase<T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const ctx = await cliContext();
  if (ctx.config.MIGRATE_ON_START) await migrate(serviceMigration(ctx.config, ctx.databaseUrl));
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 1 });
  try {
    return await fn(pool);
  } finally {
    await pool.end();
    await ctx.done();
  }
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  const { flags, positionals } = parseArgs(rest);

  switch (command) {
    case 'generate-jwt-secret':
      process.stdout.write(`${randomBytes(48).toString('base64url')}\n`);
      return;

    case 'generate-jwt-token': {
      loadDotEnv();
      const config = loadConfig();
      const sub = flags.sub;
      if (!sub) fail(`--sub is required\n${USAGE}`, 2);
      const scopes = scopesArg(flags.scopes);
      const key = loadJwtKeys(config)[0];
      if (!key?.signKey) fail('no signing key: set JWT_SECRET, or JWT_PRIVATE_KEY_FILE for RS256/ES256');
      const expiresIn = flags['expires-in'] ?? `${config.JWT_EXPIRES_IN}s`;
      const sign = createSigner({
        key: key.signKey,
        algorithm: key.algorithm,
        kid: key.kid,
        iss: config.JWT_ISSUER,
        aud: config.JWT_AUDIENCE,
        expiresIn,
      });
      process.stdout.write(`${sign({ sub, scope: scopes.join(' '), jti: randomUUID() })}\n`);
      return;
    }

    case 'create-api-key': {
      const name = flags.name;
      if (!name) fail(`--name is required\n${USAGE}`, 2);
      const scopes = scopesArg(flags.scopes);
      const days = flags['expires-in-days'] === undefined ? undefined : Number(flags['expires-in-days']);
      if (days !== undefined && (!Number.isInteger(days) || days < 1))
        fail('--expires-in-days must be a positive integer', 2);
      await withDatabase(async (pool) => {
        const config = loadConfig();
        const { row, key } = await issueApiKey(createApiKeysRepository(pool), config.API_KEY_PREFIX, {
          name,
          subject: flags.subject ?? name,
          scopes,
          expiresAt: days ? new Date(Date.now() + days * 86_400_000) : null,
        });
        await createAuditRepository(pool).record({
          action: 'api_key.created',
          subject: 'cli',
          apiKeyId: row.id,
          clientAddress: 'cli',
          details: { name: row.name, forSubject: row.subject, scopes: row.scopes },
        });
        process.stderr.write(
          `created API key ${row.id} for subject "${row.subject}" with scopes ${row.scopes.join(',')}\n`,
        );
        process.stderr.write('the key is shown once; store it now:\n');
        process.stdout.write(`${key}\n`);
      });
      return;
    }

    case 'revoke-api-key': {
      const id = positionals[0];
      if (!id || !/^[0-9a-f]{16}$/.test(id)) fail(`a key id (16 hex characters) is required\n${USAGE}`, 2);
      await withDatabase(async (pool) => {
        const config = loadConfig();
        const row = await createApiKeysRepository(pool).revoke(id);
        if (row === null) fail(`no active API key ${id}`);
        await createAuditRepository(pool).record({
          action: 'api_key.revoked',
          subject: 'cli',
          apiKeyId: id,
          clientAddress: 'cli',
        });
        // Same message the service publishes, so running instances drop the key at once.
        const redis = createRedisClient(config);
        if (redis) {
          try {
            await redis.connect();
            const message = JSON.stringify({ origin: 'cli', data: { type: 'api_key', id } });
            await publish(redis, `${config.REDIS_KEY_PREFIX}auth`, message);
          } catch {
            process.stderr.write(
              'warning: Redis unreachable; instances drop the key within API_KEY_CACHE_TTL_MS\n',
            );
          } finally {
            redis.disconnect();
          }
        }
        process.stdout.write(`revoked ${id}\n`);
      });
      return;
    }

    default:
      fail(USAGE, 2);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
