// The service through a real PgBouncer in transaction mode: connecting, the statement timeout as a role
// default (set by the migrate step, checked at start), migrations over the direct URL, no session state.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { migrate, urlRole } from '../src/lib/migrations.ts';
import { buildTestApp, createTestDatabase, type TestApp, type TestDatabase } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';
import { TEST_PG_ADMIN_URL } from './helpers/env.ts';
import { notes } from './helpers/notes.ts';
import {
  PGBOUNCER_BIN,
  PGBOUNCER_MISSING,
  type PgBouncer,
  startPgBouncer,
  transactionPoolEnv,
} from './helpers/pgbouncer.ts';

if (PGBOUNCER_BIN === undefined) console.warn(`test/pgbouncer.test.ts skipped: ${PGBOUNCER_MISSING}`);

const TIMEOUT_MS = 300;
/** The role every test connects as (shared by all tests: only ever changed IN DATABASE <own db>). */
const ROLE = urlRole(TEST_PG_ADMIN_URL);
/** PgBouncer's server pool per database: smaller than the app's pool, so clients queue in PgBouncer. */
const SERVER_POOL = 2;

async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = TEST_PG_ADMIN_URL): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The role defaults (ALTER ROLE ... IN DATABASE) of the test user in one database, by its oid. */
async function roleSettings(oid: number): Promise<string[]> {
  const { rows } = await admin((c) =>
    c.query<{ setconfig: string[] }>(
      `SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setdatabase = $1 AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)`,
      [oid],
    ),
  );
  return rows.flatMap((r) => r.setconfig);
}

/** The role's defaults for every database (ALTER ROLE ... SET without IN DATABASE). */
async function globalSettings(): Promise<string[]> {
  const { rows } = await admin((c) =>
    c.query<{ setconfig: string[] }>(
      'SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = 0 AND setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)',
    ),
  );
  return rows.flatMap((r) => r.setconfig);
}

/** The [pgbouncer] section of the PgBouncer config the repository ships (compose's pgbouncer profile). */
function shippedSettings(): Record<string, string> {
  const text = readFileSync(new URL('../docker/pgbouncer/pgbouncer.ini', import.meta.url), 'utf8');
  const settings: Record<string, string> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1] as string;
    else if (section === 'pgbouncer') {
      const [key, ...value] = line.split('=');
      settings[(key as string).trim()] = value.join('=').trim();
    }
  }
  return settings;
}

const oidOf = async (name: string) =>
  (await admin((c) => c.query<{ oid: number }>('SELECT oid FROM pg_database WHERE datname = $1', [name])))
    .rows[0]?.oid as number;

describe.skipIf(PGBOUNCER_BIN === undefined)(
  'through PgBouncer in transaction mode (needs pgbouncer)',
  () => {
    let bouncer: PgBouncer;
    const databases: TestDatabase[] = [];
    /** The oids of every database made here: after the drop, no role setting may remain on them. */
    const oids: number[] = [];
    const apps: TestApp[] = [];

    /** A database of its own (so PgBouncer opens fresh server connections for it). */
    async function database(migrated = true): Promise<TestDatabase> {
      const db = await createTestDatabase({ migrated });
      databases.push(db);
      oids.push(await oidOf(db.name));
      return db;
    }

    async function app(db: TestDatabase, env: Record<string, string>, withNotes = true): Promise<TestApp> {
      const t = await buildTestApp({
        db,
        redis: false,
        ...(withNotes ? { extend: notes() } : {}),
        env: {
          DATABASE_URL: bouncer.url(db.name),
          DATABASE_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
          RATE_LIMIT_ENABLED: 'false',
          ...env,
        },
      });
      apps.push(t);
      return t;
    }

    beforeAll(async () => {
      bouncer = await startPgBouncer({ defaultPoolSize: SERVER_POOL });
    });

    afterAll(async () => {
      for (const t of apps) await t.close();
      for (const db of databases) await db.drop();
      await bouncer?.stop();
      // Role-in-database settings go with their database (DROP DATABASE removes them): none is left.
      if (oids.length > 0) {
        const { rows } = await admin((c) =>
          c.query('SELECT setdatabase FROM pg_db_role_setting WHERE setdatabase = ANY($1::oid[])', [oids]),
        );
        expect(rows).toEqual([]);
      }
    });

    describe('connecting', () => {
      it('when the pool sends statement_timeout as a startup parameter (DATABASE_POOL_MODE=session), then PgBouncer refuses every connection and /ready is 503', async () => {
        const db = await database();
        const t = await app(db, {}, false);
        const res = await request(t.app.server).get('/ready');
        expect(res.status).toBe(503);
        expect(res.body.checks.database).toBe('unavailable');
        await expect(t.app.db.query('SELECT 1')).rejects.toThrow(
          /unsupported startup parameter: statement_timeout/,
        );
      });

      it('when DATABASE_POOL_MODE=transaction with MIGRATE_ON_START over a direct MIGRATE_DATABASE_URL, then it migrates, sets the role default and serves /ready and notes CRUD through PgBouncer', async () => {
        const db = await database(false);
        const t = await app(db, transactionPoolEnv(bouncer, db));
        // Migrated over the direct URL (the tables exist), the timeout set for this database only.
        expect(await roleSettings(await oidOf(db.name))).toEqual([`statement_timeout=${TIMEOUT_MS}ms`]);
        expect((await request(t.app.server).get('/ready')).status).toBe(200);
        // Every app connection goes through PgBouncer: the server sees them from PgBouncer, not from here.
        expect((await t.app.db.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe(
          `${TIMEOUT_MS}ms`,
        );

        const { key } = await createKey(t.app, ['admin']);
        const created = await request(t.app.server)
          .post('/v1/notes')
          .set('x-api-key', key)
          .send({ name: 'a' });
        expect(created.status).toBe(201);
        const path = `/v1/notes/${created.body.id}`;
        expect((await request(t.app.server).get(path).set('x-api-key', key)).body.name).toBe('a');
        const patched = await request(t.app.server).patch(path).set('x-api-key', key).send({ name: 'b' });
        expect(patched.body).toMatchObject({ name: 'b', version: 2 });
        expect((await request(t.app.server).delete(path).set('x-api-key', key)).status).toBe(204);
        expect((await request(t.app.server).get(path).set('x-api-key', key)).status).toBe(404);
      });
    });

    describe('with the role default set', () => {
      let t: TestApp;
      let key: string;
      beforeAll(async () => {
        const db = await database(false);
        t = await app(db, { ...transactionPoolEnv(bouncer, db), DATABASE_POOL_MAX: String(SERVER_POOL * 5) });
        key = (await createKey(t.app, ['admin'])).key;
      });

      it('when a statement runs longer than DATABASE_STATEMENT_TIMEOUT_MS through PgBouncer, then Postgres cancels it (57014) after about that long', async () => {
        const started = Date.now();
        const err = await t.app.db.query('SELECT pg_sleep(3)').catch((e: unknown) => e);
        const elapsed = Date.now() - started;
        expect((err as { code?: string }).code).toBe('57014');
        expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
        expect(elapsed).toBeLessThan(2000);
      });

      it('when more transactions run at once than PgBouncer has server connections, then each sees only its own uncommitted writes and all commit', async () => {
        const count = SERVER_POOL * 4;
        const tag = randomUUID();
        const seen = await Promise.all(
          Array.from({ length: count }, (_, i) =>
            t.app.withTransaction(async (c) => {
              await c.query(`INSERT INTO notes (owner, name) VALUES ($1, $2)`, [tag, `n${i}`]);
              // Held across an await: the server connection must stay this transaction's.
              await c.query('SELECT pg_sleep(0.05)');
              const { rows } = await c.query<{ name: string }>('SELECT name FROM notes WHERE owner = $1', [
                tag,
              ]);
              return rows.map((r) => r.name);
            }),
          ),
        );
        // Another transaction's uncommitted row is invisible; a statement sent to another server
        // connection would not see its own insert.
        for (const [i, names] of seen.entries()) expect(names).toContain(`n${i}`);
        const { rows } = await t.app.db.query('SELECT count(*)::int AS n FROM notes WHERE owner = $1', [tag]);
        expect(rows[0].n).toBe(count);
      });

      it('when idempotent POSTs with one key race through more clients than server connections, then one row is written and every answer is that 201', async () => {
        const idempotencyKey = randomUUID();
        const name = `idem-${idempotencyKey}`;
        const answers = await Promise.all(
          Array.from({ length: SERVER_POOL * 4 }, () =>
            request(t.app.server)
              .post('/v1/notes')
              .set('x-api-key', key)
              .set('idempotency-key', idempotencyKey)
              .send({ name }),
          ),
        );
        for (const res of answers) {
          expect(res.status, JSON.stringify(res.body)).toBe(201);
          expect(res.body).toEqual(answers[0]?.body);
        }
        const { rows } = await t.app.db.query('SELECT count(*)::int AS n FROM notes WHERE name = $1', [name]);
        expect(rows[0].n).toBe(1);
        // Distinct keys at once: each its own row.
        const distinct = await Promise.all(
          Array.from({ length: SERVER_POOL * 4 }, (_, i) =>
            request(t.app.server)
              .post('/v1/notes')
              .set('x-api-key', key)
              .set('idempotency-key', `${idempotencyKey}-${i}`)
              .send({ name: `${name}-${i}` }),
          ),
        );
        expect(distinct.map((r) => r.status)).toEqual(distinct.map(() => 201));
      });
    });

    describe('the start-up check', () => {
      const transaction = (db: TestDatabase) => ({
        DATABASE_POOL_MODE: 'transaction',
        MIGRATE_DATABASE_URL: db.url,
      });

      it('when the role default is missing, then the service refuses to start, saying what to run', async () => {
        const db = await database();
        const start = app(db, transaction(db));
        await expect(start).rejects.toThrow(/statement_timeout through DATABASE_URL is none \(0\)/);
        await expect(start).rejects.toThrow(
          `ALTER ROLE "${ROLE}" IN DATABASE "${db.name}" SET statement_timeout = '${TIMEOUT_MS}ms'`,
        );
      });

      it('when the server process starts without the role default, then it exits 1 with that message on one line', async () => {
        const db = await database();
        const child = spawn(process.execPath, ['src/main.ts'], {
          env: {
            PATH: process.env.PATH ?? '',
            NODE_ENV: 'test',
            PORT: '0',
            LOG_PRETTY: 'false',
            MIGRATE_ON_START: 'false',
            DATABASE_URL: bouncer.url(db.name),
            DATABASE_POOL_MODE: 'transaction',
            DATABASE_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
          },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (c: Buffer) => {
          stderr += c.toString('utf8');
        });
        const code = await new Promise((resolve) => child.on('exit', resolve));
        expect(code).toBe(1);
        expect(stderr).toMatch(
          /^failed to start: Error: DATABASE_POOL_MODE=transaction: statement_timeout .*ALTER ROLE/m,
        );
      });

      it('when the role default is larger than DATABASE_STATEMENT_TIMEOUT_MS, then the service refuses to start', async () => {
        const db = await database();
        await admin((c) =>
          c.query(`ALTER ROLE CURRENT_USER IN DATABASE "${db.name}" SET statement_timeout = '10s'`),
        );
        await expect(app(db, transaction(db))).rejects.toThrow(
          `is 10000 ms for role ${ROLE} in database ${db.name}`,
        );
      });

      it('when the role default is smaller, then the service starts and warns', async () => {
        const db = await database();
        await admin((c) =>
          c.query(`ALTER ROLE CURRENT_USER IN DATABASE "${db.name}" SET statement_timeout = '200ms'`),
        );
        const t = await app(db, transaction(db));
        expect((await request(t.app.server).get('/ready')).status).toBe(200);
        const warning = t.logs.lines.find((l) =>
          String(l.msg).startsWith('statement_timeout through the pooler'),
        );
        expect(warning).toMatchObject({ effectiveMs: 200, configuredMs: TIMEOUT_MS });
      });
    });

    describe('the shipped docker/pgbouncer/pgbouncer.ini', () => {
      const shipped = shippedSettings();

      it('when read, then it pools by transaction, passes no statement_timeout through, and its query_timeout is a backstop just above the default statement timeout', () => {
        expect(shipped.pool_mode).toBe('transaction');
        expect(shipped.ignore_startup_parameters ?? '').not.toContain('statement_timeout');
        const statementTimeoutMs = loadConfig({}).DATABASE_STATEMENT_TIMEOUT_MS;
        const queryTimeoutMs = Number(shipped.query_timeout) * 1000;
        expect(queryTimeoutMs).toBeGreaterThan(statementTimeoutMs);
        expect(queryTimeoutMs).toBeLessThanOrEqual(statementTimeoutMs + 2000);
      });

      it('when PgBouncer runs its settings (on a loopback port, trust auth), then the service is ready through it and Postgres cancels a slow statement', async () => {
        const own = await startPgBouncer({
          settings: Object.fromEntries(
            Object.entries(shipped).filter(
              ([k]) =>
                !['listen_addr', 'listen_port', 'unix_socket_dir', 'auth_type', 'auth_file'].includes(k),
            ),
          ),
        });
        try {
          const db = await database(false);
          const t = await buildTestApp({
            db,
            redis: false,
            env: {
              ...transactionPoolEnv(own, db),
              DATABASE_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
            },
          });
          try {
            expect((await request(t.app.server).get('/ready')).status).toBe(200);
            const err = await t.app.db.query('SELECT pg_sleep(2)').catch((e: unknown) => e);
            expect((err as { code?: string }).code).toBe('57014');
          } finally {
            await t.close();
          }
        } finally {
          await own.stop();
        }
      });
    });

    describe('npm run migrate', () => {
      const run = (env: Record<string, string>) =>
        new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, ['src/cli/migrate.ts', 'up'], {
            env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', ...env },
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let stderr = '';
          child.stderr.on('data', (c: Buffer) => {
            stderr += c.toString('utf8');
          });
          child.on('exit', (code) => resolve({ code, stderr }));
        });

      it('when DATABASE_POOL_MODE=transaction, then it migrates over MIGRATE_DATABASE_URL and sets the role default for DATABASE_URL', async () => {
        const db = await database(false);
        const result = await run({
          DATABASE_URL: bouncer.url(db.name),
          MIGRATE_DATABASE_URL: db.url,
          DATABASE_POOL_MODE: 'transaction',
          DATABASE_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
        });
        expect(result.code, result.stderr).toBe(0);
        expect(await roleSettings(await oidOf(db.name))).toEqual([`statement_timeout=${TIMEOUT_MS}ms`]);
        const applied = await admin((c) => c.query('SELECT count(*)::int AS n FROM pgmigrations'), db.url);
        expect(applied.rows[0].n).toBeGreaterThan(0);
      });

      it('when DATABASE_POOL_MODE=transaction without MIGRATE_DATABASE_URL, then it refuses (exit 78) instead of migrating through the pooler', async () => {
        const db = await database(false);
        // As the migration Job runs: MIGRATE_ON_START=false (with it on, the configuration itself is refused).
        const result = await run({
          DATABASE_URL: bouncer.url(db.name),
          DATABASE_POOL_MODE: 'transaction',
          MIGRATE_ON_START: 'false',
        });
        expect(result.code).toBe(78);
        expect(result.stderr).toContain('set MIGRATE_DATABASE_URL to a direct URL');
        const tables = await admin((c) => c.query(`SELECT to_regclass('pgmigrations') AS t`), db.url);
        expect(tables.rows[0].t).toBeNull();
      });
    });
  },
);

describe('the role statement_timeout default, set by the migrate step', () => {
  let db: TestDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('when replicas migrate together, then each sets or finds the default without a concurrent-update error, in this database only', async () => {
    db = await createTestDatabase({ migrated: false });
    const oid = await oidOf(db.name);
    const url = db.url;
    const globalBefore = await globalSettings();
    const runs = Array.from({ length: 4 }, () =>
      migrate({ databaseUrl: url, roleStatementTimeout: { role: ROLE, ms: 1234 } }),
    );
    await Promise.all(runs);
    expect(await roleSettings(oid)).toEqual(['statement_timeout=1234ms']);
    // Changed when the configuration changes.
    await migrate({ databaseUrl: url, roleStatementTimeout: { role: ROLE, ms: 999 } });
    expect(await roleSettings(oid)).toEqual(['statement_timeout=999ms']);
    // The role's default elsewhere is untouched (the role is shared by every test).
    expect(await globalSettings()).toEqual(globalBefore);
  });

  it('when the role default is shorter than a migration, then the migration still completes (the migration connection has no timeout)', async () => {
    db = await createTestDatabase({ migrated: false });
    await admin((c) =>
      c.query(`ALTER ROLE CURRENT_USER IN DATABASE "${db?.name}" SET statement_timeout = '100ms'`),
    );
    // The fixtures' first migration sleeps 0.3 s.
    const applied = await migrate({
      databaseUrl: db.url,
      dir: fileURLToPath(new URL('./fixtures/migrations', import.meta.url)),
    });
    expect(applied).toHaveLength(2);
  });
});

describe('session state in src/ (what transaction pooling would leak)', () => {
  /** Every .ts file under src/, comments stripped, by path. */
  function sources(dir = new URL('../src/', import.meta.url)): Map<string, string> {
    const out = new Map<string, string>();
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const url = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir);
      if (entry.isDirectory()) for (const [k, v] of sources(url)) out.set(k, v);
      else if (entry.name.endsWith('.ts'))
        out.set(
          url.pathname.slice(url.pathname.indexOf('/src/') + 1),
          readFileSync(url, 'utf8')
            .replace(/\/\*[\s\S]*?\*\//g, '')
            .replace(/^\s*\/\/.*$/gm, ''),
        );
    }
    return out;
  }
  const LEAKS: [string, RegExp][] = [
    [
      'a session SET (use SET LOCAL in a transaction)',
      /[`'";]\s*SET\s+(SESSION\s+)?(?!LOCAL\b)\w+\s*(=|TO\b)/i,
    ],
    ['set_config(..., false) (session-wide)', /set_config\([^)]*,\s*false\s*\)/i],
    ['a session advisory lock', /pg_advisory_(?!xact_)\w*lock|pg_try_advisory_(?!xact_)\w*lock/i],
    ['LISTEN/NOTIFY', /\b(UN)?LISTEN\s+["\w]|\bNOTIFY\s+["\w]|pg_notify\s*\(/],
    ['a temporary table', /CREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE/i],
    ['a named prepared statement', /\.query\s*(<[^>]*>)?\(\s*\{[^}]*\bname\s*:/s],
  ];

  it('when src/ is read, then no statement leaves session state on a pooled server connection (migrations, on their direct connection, excepted)', () => {
    const found: string[] = [];
    for (const [path, text] of sources()) {
      if (path === 'src/lib/migrations.ts') continue;
      for (const [what, pattern] of LEAKS) if (pattern.test(text)) found.push(`${path}: ${what}`);
    }
    expect(found).toEqual([]);
  });

  it('when such a statement is written, then the scan finds it', () => {
    const samples = [
      "await db.query('SET statement_timeout = 0')",
      'await db.query(`set search_path TO app`)',
      "await db.query('SELECT set_config($1, $2, false)', [k, v])",
      "await db.query('SELECT pg_advisory_lock(1)')",
      "await db.query('LISTEN events')",
      "await db.query('CREATE TEMP TABLE t (id int)')",
      "await db.query({ name: 'get-item', text: 'SELECT 1' })",
    ];
    for (const sample of samples)
      expect(
        LEAKS.some(([, p]) => p.test(sample)),
        sample,
      ).toBe(true);
    for (const harmless of [
      "await db.query('UPDATE items SET name = $1')",
      'await db.query(`UPDATE items\n  SET name = $1\n  WHERE id = $2`)',
      "await c.query('SET LOCAL statement_timeout = 100')",
      "await c.query('SELECT pg_advisory_xact_lock(1)')",
    ])
      expect(
        LEAKS.some(([, p]) => p.test(harmless)),
        harmless,
      ).toBe(false);
  });
});
