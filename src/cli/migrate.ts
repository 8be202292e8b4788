// `npm run migrate` (up), `npm run migrate:down` (revert one), `npm run migrate:create -- name`.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS_DIR, migrate, serviceMigration } from '../lib/migrations.ts';
import { cliContext, fail, parseArgs } from './cli-context.ts';

const TEMPLATE = `-- Up Migration

-- Down Migration
`;

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  const { flags, positionals } = parseArgs(rest);
  if (command === 'create') {
    const name = positionals[0];
    if (!name || positionals.length > 1 || !/^[a-z0-9_-]+$/i.test(name))
      fail('usage: npm run migrate:create -- <name> (letters, digits, _ and -)', 2);
    const file = join(MIGRATIONS_DIR, `${Date.now()}_${name}.sql`);
    if (existsSync(file)) fail(`${file} exists`);
    writeFileSync(file, TEMPLATE);
    process.stdout.write(`created ${file}\n`);
    return;
  }
  if (command !== 'up' && command !== 'down') fail('usage: migrate up|down [--count N] | create <name>', 2);
  const count = flags.count === undefined ? undefined : Number(flags.count);
  if (count !== undefined && (!Number.isInteger(count) || count < 1))
    fail('--count must be a positive integer', 2);
  // Migrations never touch tokens: the migration Job needs no JWT secret.
  const ctx = await cliContext({ withoutJwt: true });
  if (ctx.config.DATABASE_POOL_MODE === 'transaction' && ctx.config.MIGRATE_DATABASE_URL === undefined)
    fail(
      'DATABASE_POOL_MODE=transaction: set MIGRATE_DATABASE_URL to a direct URL (migrations hold a session lock a transaction pooler cannot keep)',
      78,
    );
  try {
    const applied = await migrate({
      // Transaction pooling: the service's statement timeout becomes DATABASE_URL's role default here.
      ...serviceMigration(ctx.config, ctx.databaseUrl),
      direction: command,
      ...(count === undefined ? {} : { count }),
      log: (m) => process.stderr.write(`${m}\n`),
    });
    process.stdout.write(
      applied.length === 0
        ? 'nothing to do\n'
        : `${command === 'up' ? 'applied' : 'reverted'}: ${applied.join(', ')}\n`,
    );
  } finally {
    await ctx.done();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`migrate failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
