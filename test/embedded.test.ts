import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startEmbeddedPostgres } from '../src/lib/embedded-postgres.ts';
import { MIGRATIONS_DIR } from '../src/lib/migrations.ts';
import { LogCapture } from './helpers/app.ts';

describe('embedded default database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pglite-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('when DATABASE_URL and REDIS_URL are unset, then the app boots on embedded Postgres, migrates and is ready', async () => {
    const config = loadConfig({
      NODE_ENV: 'development',
      LOG_PRETTY: 'false',
      EMBEDDED_DB_DIR: dir,
      EMBEDDED_DB_PORT: '0',
    });
    const logs = new LogCapture();
    const app = await buildApp(config, { logStream: logs });
    try {
      await app.ready();
      const res = await request(app.server).get('/ready');
      expect(res.status).toBe(200);
      expect(res.body.checks).toEqual({ database: 'ok', redis: 'disabled' });
      const { rows } = await app.db.query<{ n: string }>('SELECT count(*) AS n FROM pgmigrations');
      expect(Number(rows[0]?.n)).toBeGreaterThanOrEqual(0);
      expect(logs.lines.some((l) => l.msg === 'using embedded postgres')).toBe(true);
    } finally {
      await app.close();
    }
    expect(logs.lines.some((l) => l.msg === 'embedded postgres stopped')).toBe(true);
  });

  it("when the first start migrates slower than Fastify's plugin timeout (10 s), then the service still comes up", async () => {
    // The project's migrations plus one that takes 11 s: a slow, loaded machine's first start.
    const migrations = join(dir, 'slow-migrations');
    cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
    writeFileSync(join(migrations, '9999999999999_slow.sql'), '-- Up Migration\nSELECT pg_sleep(11);\n');
    const config = loadConfig({
      NODE_ENV: 'development',
      LOG_PRETTY: 'false',
      EMBEDDED_DB_DIR: join(dir, 'slow'),
      EMBEDDED_DB_PORT: '0',
    });
    const startedAt = Date.now();
    const app = await buildApp(config, { logStream: new LogCapture(), migrationsDir: migrations });
    try {
      await app.ready();
      expect(Date.now() - startedAt).toBeGreaterThan(10_000);
      expect((await request(app.server).get('/ready')).status).toBe(200);
      const { rows } = await app.db.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id');
      expect(rows.at(-1)?.name).toBe('9999999999999_slow');
    } finally {
      await app.close();
    }
  }, 60_000);

  it('when the embedded database already runs on the port, then a second process joins it', async () => {
    const first = await startEmbeddedPostgres(join(dir, 'shared'), 0);
    try {
      const port = Number(new URL(first.url).port);
      const second = await startEmbeddedPostgres(join(dir, 'other'), port);
      expect(second.owned).toBe(false);
      expect(second.url).toBe(first.url);
    } finally {
      await first.stop();
    }
  });
});
