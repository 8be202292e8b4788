// Owns the contract of scripts/backup.sh, scripts/restore.sh and the backup CronJob, on the real PostgreSQL.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { migrate } from '../../src/lib/migrations.ts';
import { createApiKeysRepository } from '../../src/modules/api-keys/api-keys-repository.ts';
import { issueApiKey } from '../../src/modules/api-keys/api-keys-service.ts';
import { render } from '../deploy/support/k8s.ts';
import { buildTestApp, createTestDatabase, type TestDatabase } from '../helpers/app.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKUP = join(ROOT, 'scripts/backup.sh');
const RESTORE = join(ROOT, 'scripts/restore.sh');
const readRepo = (path: string) => readFileSync(join(ROOT, path), 'utf8');

const missingTools = ['pg_dump', 'pg_restore', 'psql'].filter(
  (tool) => spawnSync(tool, ['--version'], { encoding: 'utf8' }).status !== 0,
);
const TOOLS_MISSING = `${missingTools.join(', ')} not found: install the PostgreSQL client tools, at least the server's major version (Debian/Ubuntu: apt-get install postgresql-client)`;
if (missingTools.length > 0)
  console.warn(`test/operations/backup.test.ts: backup and restore skipped: ${TOOLS_MISSING}`);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script with only PATH from this process: no DATABASE_URL or PG* variable leaks in. */
function run(script: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync('bash', [script, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', ...env },
    timeout: 15_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Realistic rows in every table, with the values dumps get wrong: quotes, unicode, NULLs, bytea, jsonb, gaps. */
const POPULATE = String.raw`
INSERT INTO api_keys (id, name, subject, scopes, secret_hash, created_at, expires_at, last_used_at, revoked_at)
SELECT lpad(to_hex(i * 7919), 16, '0'), 'key ' || i, 'user-' || (i % 7),
       (ARRAY['{admin}', '{admin,retired:scope}', '{}'])[i % 3 + 1]::text[],
       sha256(convert_to('secret-' || i, 'UTF8')),
       timestamptz '2025-01-01 00:00:00.123456+00' + i * interval '1 hour 1 microsecond',
       CASE WHEN i % 4 = 0 THEN timestamptz '2030-06-01 12:00:00+00' END,
       CASE WHEN i % 2 = 0 THEN timestamptz '2025-03-01 08:30:00.5+00' + i * interval '1 minute' END,
       CASE WHEN i % 5 = 0 THEN timestamptz '2025-04-01 00:00:00+00' END
FROM generate_series(1, 60) AS i;
INSERT INTO api_keys (id, name, subject, scopes, secret_hash)
VALUES ('00000000000000a1', E'O''Brien "quoted" \\ back\\slash',
        E'line one\nline two\ttabbed — ünïcødé 🚀 日本語', ARRAY['a,b', 'with space', '"q"', 'ключ', 'NULL'],
        sha256(convert_to('secret-a1', 'UTF8'))),
       ('00000000000000a2', repeat('n', 100), repeat('s', 200), '{admin}', sha256(convert_to('secret-a2', 'UTF8')));

INSERT INTO audit_log (occurred_at, action, subject, api_key_id, request_id, client_address, details)
SELECT timestamptz '2025-05-01 00:00:00+00' + i * interval '3 seconds',
       (ARRAY['api_key.created', 'api_key.revoked', 'token.issued', 'auth.repeated_failures'])[i % 4 + 1],
       CASE WHEN i % 6 = 0 THEN NULL ELSE 'user-' || (i % 7) END,
       lpad(to_hex(i * 7919), 16, '0'), 'req-' || i,
       CASE WHEN i % 2 = 0 THEN '2001:db8::' || to_hex(i) ELSE '192.0.2.' || (i % 250) END,
       jsonb_build_object('scopes', jsonb_build_array('admin'), 'n', i, 'nested', jsonb_build_object('ok', i % 2 = 0, 'none', NULL))
FROM generate_series(1, 300) AS i;
-- Gaps and a sequence ahead of the highest id: the restored identity must continue after it.
DELETE FROM audit_log WHERE id % 10 = 0;
SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) FROM generate_series(1, 5);

-- Completed responses (one empty body), and claims still in progress (NULL status, headers and body).
INSERT INTO idempotency_keys (subject, method, route, key, request_hash, status_code, headers, body,
                              created_at, expires_at)
SELECT 'user-' || (i % 7), (ARRAY['POST', 'PATCH', 'DELETE'])[i % 3 + 1],
       CASE WHEN i % 3 = 0 THEN '/v1/widgets' ELSE '/v1/widgets/:id' END,
       'idem-' || i, sha256(convert_to('body-' || i, 'UTF8')),
       CASE WHEN i % 5 = 0 THEN NULL WHEN i % 3 = 2 THEN 204 ELSE 201 END,
       CASE WHEN i % 5 = 0 THEN NULL
            ELSE jsonb_build_object('content-type', 'application/json; charset=utf-8', 'location', '/v1/widgets/' || i)
       END,
       CASE WHEN i % 5 = 0 THEN NULL WHEN i % 3 = 2 THEN ''
            ELSE jsonb_build_object('id', i, 'name', 'widget ' || i || ' ' || repeat('é', i % 4))::text
       END,
       timestamptz '2025-06-01 00:00:00+00' + i * interval '1 hour 3 microseconds',
       timestamptz '2025-06-02 00:00:00+00' + i * interval '1 day'
FROM generate_series(1, 25) AS i;
INSERT INTO idempotency_keys (subject, method, route, key, request_hash, status_code, headers, body, expires_at)
VALUES (E'O''Brien', 'POST', '/v1/widgets', repeat('~', 255), '\x00ff'::bytea, 200,
        '{"etag": "\"7\"", "content-type": "text/plain; charset=utf-8"}',
        E'line one\nline two\ttabbed "q" \\ ünïcødé 🚀 日本語', timestamptz '2030-01-01 00:00:00+00');
`;

/** The tables the service itself owns, seeded above; a fork's resources add theirs beside them. */
const PLATFORM_TABLES = ['api_keys', 'audit_log', 'idempotency_keys', 'pgmigrations'];

/** Rows in the seeded tables of a database: 0 means nothing was restored into it. */
const seededRowCount = (url: string) =>
  withClient(url, async (c) =>
    Number(
      (
        await c.query<{ n: string }>(
          `SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM audit_log)
                  + (SELECT count(*) FROM idempotency_keys) AS n`,
        )
      ).rows[0]?.n,
    ),
  );

/** Every row of every table (as jsonb text, sorted) and the schema objects a restore must bring back. */
async function snapshot(url: string) {
  return withClient(url, async (c) => {
    const tableNames = (
      await c.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
      )
    ).rows.map((r) => r.name);
    const tables: Record<string, string[]> = {};
    for (const name of tableNames)
      tables[name] = (
        await c.query<{ row: string }>(`SELECT to_jsonb(t)::text AS row FROM public."${name}" t ORDER BY 1`)
      ).rows.map((r) => r.row);
    const q = async (sql: string) => (await c.query(sql)).rows;
    const schema = {
      columns:
        await q(`SELECT table_name, column_name, ordinal_position, udt_name, is_nullable, column_default,
                               is_identity, identity_generation
                        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3`),
      indexes: await q(
        `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`,
      ),
      constraints:
        await q(`SELECT conrelid::regclass::text AS table, conname, pg_get_constraintdef(oid) AS def
                            FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`),
      sequences: await q(`SELECT sequencename, last_value::text, increment_by::text
                          FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1`),
    };
    return { tables, schema };
  });
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'backup-test-'));
  tempDirs.push(dir);
  return dir;
}

const databases: TestDatabase[] = [];
async function database(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const db = await createTestDatabase(options);
  databases.push(db);
  return db;
}

const userTableCount = (url: string) =>
  withClient(url, async (c) =>
    Number(
      (
        await c.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`,
        )
      ).rows[0]?.n,
    ),
  );

const dumpsIn = (dir: string) => readdirSync(dir).sort();

describe.skipIf(missingTools.length > 0)('backup.sh and restore.sh (needs pg_dump, pg_restore, psql)', () => {
  let source: TestDatabase;
  let apiKey: string;
  let backupDir: string;
  let dump: string;
  let backupRun: Run;
  let before: Awaited<ReturnType<typeof snapshot>>;
  // A password in the URL: trust authentication ignores it, the scripts must still keep it out of logs.
  const sourceUrl = () => {
    const u = new URL(source.url);
    u.password = 'pw-s3cr%40t';
    return u.toString();
  };

  beforeAll(async () => {
    source = await database();
    await withClient(source.url, (c) => c.query(POPULATE));
    const pool = new pg.Pool({ connectionString: source.url, max: 1 });
    try {
      const issued = await issueApiKey(createApiKeysRepository(pool), 'sk', {
        name: 'restore drill',
        subject: 'user-1',
        scopes: ['admin'],
        expiresAt: null,
      });
      apiKey = issued.key;
    } finally {
      await pool.end();
    }
    backupDir = tempDir();
    const urlFile = join(tempDir(), 'database_url');
    writeFileSync(urlFile, `${sourceUrl()}\n`);
    backupRun = run(BACKUP, [], { DATABASE_URL_FILE: urlFile, BACKUP_DIR: backupDir });
    dump = backupRun.stdout.trim();
    before = await snapshot(source.url);
  });

  afterAll(async () => {
    await Promise.all(databases.map((db) => db.drop()));
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  describe('a backup', () => {
    it('when backup.sh runs, then it writes one custom-format dump and its checksum, prints its path and never logs the password', () => {
      expect(backupRun.status, backupRun.stderr).toBe(0);
      const name = basename(dump);
      expect(name).toMatch(/^api_\d{8}T\d{6}Z\.dump$/);
      expect(dumpsIn(backupDir)).toEqual([name, `${name}.sha256`]);
      // pg_dump's custom format starts with the PGDMP magic.
      expect(readFileSync(dump).subarray(0, 5).toString()).toBe('PGDMP');
      expect(readFileSync(`${dump}.sha256`, 'utf8')).toBe(`${sha256(dump)}  ${name}\n`);
      expect(backupRun.stderr).toMatch(
        /backup: wrote api_\d{8}T\d{6}Z\.dump \(\d+ bytes, sha256 [0-9a-f]{64}\)/,
      );
      expect(`${backupRun.stdout}${backupRun.stderr}`).not.toMatch(/s3cr|pw-/);
    });

    it('when the dump is restored into a fresh empty database, then every row of every table, the schema and the sequences are identical', async () => {
      const target = await database({ migrated: false });
      const r = run(RESTORE, [dump, target.url]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/checksum ok/);

      const after = await snapshot(target.url);
      expect(Object.keys(before.tables)).toEqual(expect.arrayContaining(PLATFORM_TABLES));
      expect(Object.keys(after.tables)).toEqual(Object.keys(before.tables));
      // Comparing two empty databases would prove nothing.
      for (const table of PLATFORM_TABLES)
        expect(before.tables[table]?.length, `${table} rows`).toBeGreaterThan(0);
      expect(before.tables.api_keys).toHaveLength(63);
      expect(before.tables.audit_log).toHaveLength(270);
      expect(before.tables.idempotency_keys).toHaveLength(26);
      for (const [table, rows] of Object.entries(before.tables))
        expect(after.tables[table], table).toEqual(rows);
      expect(after.schema).toEqual(before.schema);
      expect(before.schema.indexes.length).toBeGreaterThan(5);
    });

    it('when the API starts on a restored database, then it has no migration to apply, accepts a restored key and serves the restored rows', async () => {
      const target = await database({ migrated: false });
      const r = run(RESTORE, [dump, target.url]);
      expect(r.status, r.stderr).toBe(0);
      expect(await migrate({ databaseUrl: target.url })).toEqual([]);

      const t = await buildTestApp({ db: target, redis: false });
      try {
        const auth = { authorization: `Bearer ${apiKey}` };
        const me = await t.app.inject({ method: 'GET', url: '/v1/me', headers: auth });
        expect(me.statusCode, me.body).toBe(200);
        expect(me.json()).toMatchObject({ subject: 'user-1', kind: 'api_key' });
        const list = await t.app.inject({ method: 'GET', url: '/v1/api-keys?limit=100', headers: auth });
        expect(list.statusCode, list.body).toBe(200);
        const keys = list.json().items as { id: string }[];
        expect(keys).toHaveLength(63);
        expect(keys.find((k) => k.id === '00000000000000a1')).toMatchObject({
          name: 'O\'Brien "quoted" \\ back\\slash',
          subject: 'line one\nline two\ttabbed — ünïcødé 🚀 日本語',
          scopes: ['a,b', 'with space', '"q"', 'ключ', 'NULL'],
          revokedAt: null,
        });
        // Microsecond timestamps come back as the API renders them (milliseconds).
        expect(keys.find((k) => k.id === '0000000000009aab')).toMatchObject({
          name: 'key 5',
          createdAt: '2025-01-01T05:00:00.123Z',
          revokedAt: '2025-04-01T00:00:00.000Z',
          lastUsedAt: null,
        });
      } finally {
        await t.close();
      }
      // The restored identity continues after the source's sequence, not after its highest row.
      const id = await withClient(target.url, async (c) => {
        const res = await c.query<{ id: string }>(
          `INSERT INTO audit_log (action) VALUES ('drill') RETURNING id`,
        );
        return Number(res.rows[0]?.id);
      });
      const sequence = before.schema.sequences.find((s) => s.sequencename === 'audit_log_id_seq');
      expect(id).toBe(Number(sequence?.last_value) + 1);
      expect(id).toBeGreaterThan(300);
    });
  });

  describe('restore refusals', () => {
    it('when the target database is not empty, then restore.sh refuses without --force or --clean and leaves it untouched', async () => {
      const target = await database(); // migrated: tables exist, no rows
      const r = run(RESTORE, [dump, target.url]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/not empty .*--clean.*--force/);
      expect(await seededRowCount(target.url)).toBe(0);

      const clean = run(RESTORE, ['--clean', dump, target.url]);
      expect(clean.status, clean.stderr).toBe(0);
      expect((await snapshot(target.url)).tables).toEqual(before.tables);
    });

    it('when the dump does not match its checksum, then restore.sh refuses it before touching the target', async () => {
      const dir = tempDir();
      const copy = join(dir, basename(dump));
      copyFileSync(dump, copy);
      copyFileSync(`${dump}.sha256`, `${copy}.sha256`);
      const bytes = readFileSync(copy);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] as number) ^ 0xff;
      writeFileSync(copy, bytes);

      const target = await database({ migrated: false });
      const r = run(RESTORE, [copy, target.url]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/checksum mismatch/);
      expect(r.stderr).not.toMatch(/restoring/);
      expect(await userTableCount(target.url)).toBe(0);
    });

    it('when the checksum file is missing, then restore.sh refuses the dump unless told --no-verify', async () => {
      const dir = tempDir();
      const copy = join(dir, basename(dump));
      copyFileSync(dump, copy);
      const target = await database({ migrated: false });
      const refused = run(RESTORE, [copy, target.url]);
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/\.sha256 not found/);
      expect(await userTableCount(target.url)).toBe(0);

      const forced = run(RESTORE, ['--no-verify', copy, target.url]);
      expect(forced.status, forced.stderr).toBe(0);
      expect(await userTableCount(target.url)).toBe(Object.keys(before.tables).length);
    });

    it('when a dump is cut short (with a matching checksum), then the restore fails and leaves the target empty', async () => {
      const dir = tempDir();
      const copy = join(dir, basename(dump));
      copyFileSync(dump, copy);
      truncateSync(copy, Math.floor(statSync(copy).size * 0.8));
      writeFileSync(`${copy}.sha256`, `${sha256(copy)}  ${basename(copy)}\n`);

      const target = await database({ migrated: false });
      const r = run(RESTORE, [copy, target.url]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/pg_restore failed|not a readable/);
      // One transaction: nothing half-restored.
      expect(await userTableCount(target.url)).toBe(0);
    });
  });

  describe('retention', () => {
    /** Fake older dumps (named by their timestamps) with checksums, plus files retention must leave alone. */
    function seed(dir: string, stamps: string[]) {
      for (const stamp of stamps) {
        writeFileSync(join(dir, `api_${stamp}.dump`), `fake ${stamp}`);
        writeFileSync(join(dir, `api_${stamp}.dump.sha256`), `fake checksum ${stamp}`);
      }
      writeFileSync(join(dir, 'other_20200101T000000Z.dump'), 'another prefix');
      writeFileSync(join(dir, 'notes.txt'), 'not a dump');
    }
    const stamps = ['20240101T000000Z', '20240102T000000Z', '20240103T000000Z', '20240104T000000Z'];

    it('when BACKUP_KEEP is N, then exactly the N newest dumps of the prefix and their checksums remain', () => {
      const dir = tempDir();
      seed(dir, stamps);
      const r = run(BACKUP, [], { DATABASE_URL: source.url, BACKUP_DIR: dir, BACKUP_KEEP: '3' });
      expect(r.status, r.stderr).toBe(0);
      const fresh = basename(r.stdout.trim());
      expect(dumpsIn(dir)).toEqual(
        [
          'api_20240103T000000Z.dump',
          'api_20240103T000000Z.dump.sha256',
          'api_20240104T000000Z.dump',
          'api_20240104T000000Z.dump.sha256',
          fresh,
          `${fresh}.sha256`,
          'notes.txt',
          'other_20200101T000000Z.dump',
        ].sort(),
      );
      expect(r.stderr).toMatch(/deleted api_20240101T000000Z\.dump \(beyond the newest 3\)/);
    });

    it('when BACKUP_MAX_AGE_DAYS is D, then dumps modified more than D days ago go and younger ones stay', () => {
      const dir = tempDir();
      seed(dir, stamps);
      const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000);
      utimesSync(join(dir, 'api_20240101T000000Z.dump'), daysAgo(40), daysAgo(40));
      utimesSync(join(dir, 'api_20240102T000000Z.dump'), daysAgo(31), daysAgo(31));
      utimesSync(join(dir, 'api_20240103T000000Z.dump'), daysAgo(29), daysAgo(29));
      utimesSync(join(dir, 'other_20200101T000000Z.dump'), daysAgo(400), daysAgo(400));
      const r = run(BACKUP, [], {
        DATABASE_URL: source.url,
        BACKUP_DIR: dir,
        BACKUP_KEEP: '0',
        BACKUP_MAX_AGE_DAYS: '30',
      });
      expect(r.status, r.stderr).toBe(0);
      const remaining = dumpsIn(dir).filter((f) => f.startsWith('api_2024'));
      expect(remaining).toEqual([
        'api_20240103T000000Z.dump',
        'api_20240103T000000Z.dump.sha256',
        'api_20240104T000000Z.dump',
        'api_20240104T000000Z.dump.sha256',
      ]);
      expect(existsSync(join(dir, 'other_20200101T000000Z.dump'))).toBe(true);
      expect(existsSync(r.stdout.trim())).toBe(true);
    });

    it('when a retention setting is not a number, then backup.sh refuses before dumping', () => {
      const dir = tempDir();
      const r = run(BACKUP, [], { DATABASE_URL: source.url, BACKUP_DIR: dir, BACKUP_KEEP: 'seven' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/BACKUP_KEEP must be a non-negative integer/);
      expect(dumpsIn(dir)).toEqual([]);
    });
  });

  describe('upload hook and failures', () => {
    it('when BACKUP_UPLOAD_COMMAND is set, then it runs once with the complete dump and checksum paths', () => {
      const dir = tempDir();
      const uploads = tempDir();
      const r = run(BACKUP, [], {
        DATABASE_URL: source.url,
        BACKUP_DIR: dir,
        UPLOADS: uploads,
        BACKUP_UPLOAD_COMMAND: 'printf "%s\\n" "$@" >> "$UPLOADS/calls" && cp "$1" "$2" "$UPLOADS/"',
      });
      expect(r.status, r.stderr).toBe(0);
      const path = r.stdout.trim();
      expect(readFileSync(join(uploads, 'calls'), 'utf8')).toBe(`${path}\n${path}.sha256\n`);
      // The uploaded copy is the finished dump: it matches the checksum written next to it.
      const uploaded = join(uploads, basename(path));
      expect(readFileSync(`${uploaded}.sha256`, 'utf8')).toBe(`${sha256(uploaded)}  ${basename(path)}\n`);
    });

    it('when the upload hook fails, then backup.sh exits non-zero, says so, keeps the dump and skips retention', () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'api_20240101T000000Z.dump'), 'old');
      const r = run(BACKUP, [], {
        DATABASE_URL: source.url,
        BACKUP_DIR: dir,
        BACKUP_KEEP: '1',
        BACKUP_UPLOAD_COMMAND: 'echo "bucket unreachable" >&2; exit 3',
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/bucket unreachable[\s\S]*BACKUP_UPLOAD_COMMAND failed/);
      expect(dumpsIn(dir).filter((f) => f.endsWith('.dump'))).toHaveLength(2);
    });

    it('when pg_dump fails, then backup.sh exits non-zero and leaves neither a dump nor a temporary file', () => {
      const dir = tempDir();
      const u = new URL(source.url);
      u.pathname = '/no_such_database_for_backup_test';
      const r = run(BACKUP, [], { DATABASE_URL: u.toString(), BACKUP_DIR: dir });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/pg_dump failed/);
      expect(r.stdout).toBe('');
      expect(dumpsIn(dir)).toEqual([]);
    });

    it('when both DATABASE_URL and DATABASE_URL_FILE are set, then backup.sh refuses, as the service does', () => {
      const dir = tempDir();
      const file = join(dir, 'url');
      writeFileSync(file, source.url);
      const r = run(BACKUP, [], { DATABASE_URL: source.url, DATABASE_URL_FILE: file, BACKUP_DIR: dir });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/DATABASE_URL and DATABASE_URL_FILE are both set/);
    });
  });
});

describe('usage', () => {
  it.each([
    ['backup.sh', BACKUP, /usage: scripts\/backup\.sh/],
    ['restore.sh', RESTORE, /usage: scripts\/restore\.sh/],
  ])(
    'when %s is given -h, then it prints its usage and exits 0, and 2 on an unknown option',
    (_name, script, usage) => {
      const r = run(script, ['-h']);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(usage);
      const bad = run(script, ['--no-such-option']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(usage);
    },
  );
});

// biome-ignore lint/suspicious/noExplicitAny: manifests are walked generically.
type Any = any;

describe('the backup CronJob (k8s/base/backup-cronjob.yaml)', () => {
  const objects = parseAllDocuments(readRepo('k8s/base/backup-cronjob.yaml')).map((d) => d.toJS() as Any);
  const cron = objects.find((o) => o.kind === 'CronJob');
  const pod = cron?.spec.jobTemplate.spec.template;
  const container = pod?.spec.containers[0];
  const env = Object.fromEntries((container?.env ?? []).map((e: Any) => [e.name, e.value]));
  const volumeAt = (path: string) => {
    const mount = container.volumeMounts.find(
      (m: Any) => path === m.mountPath || path.startsWith(`${m.mountPath}/`),
    );
    return { mount, volume: pod.spec.volumes.find((v: Any) => v.name === mount?.name) };
  };

  it('when the CronJob starts a pod, then it runs backup.sh from the script ConfigMap with only variables the script reads', () => {
    expect(cron.apiVersion).toBe('batch/v1');
    expect(cron.spec.concurrencyPolicy).toBe('Forbid');
    const script = container.command.at(-1);
    const { volume } = volumeAt(script);
    expect(volume?.configMap?.name).toBe('api-backup-script');
    expect(basename(script)).toBe('backup.sh');
    // Every variable set is one backup.sh documents, or libpq's own.
    const documented = new Set(
      [...readRepo('scripts/backup.sh').matchAll(/^ {2}([A-Z][A-Z0-9_]+) /gm)].map((m) => m[1]),
    );
    expect(documented.size).toBeGreaterThan(5);
    for (const name of Object.keys(env))
      expect(documented.has(name) || /^PG[A-Z_]+$/.test(name), `${name} is not read by backup.sh`).toBe(true);
    // BACKUP_DIR is a mounted volume: the root filesystem is read-only.
    expect(volumeAt(env.BACKUP_DIR).volume?.persistentVolumeClaim?.claimName).toBe(
      objects.find((o) => o.kind === 'PersistentVolumeClaim')?.metadata.name,
    );
  });

  it('when the rendered base ships the script ConfigMap, then it holds every file the scripts source', () => {
    const rendered = render('base');
    const configMap = rendered.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('api-backup-script'),
    );
    const shipped = Object.keys(configMap?.data ?? {});
    expect(shipped).toEqual(expect.arrayContaining(['backup.sh', 'restore.sh']));
    for (const script of ['backup.sh', 'restore.sh']) {
      for (const [, sourced] of readRepo(`scripts/${script}`).matchAll(
        /^source "\$\(dirname[^)]*\)\/([\w.-]+)"/gm,
      ))
        expect(shipped, `${script} sources ${sourced}`).toContain(sourced);
    }
    // The CronJob refers to the generated (hashed) name.
    const cronJob = rendered.find((o) => o.kind === 'CronJob');
    const volumes = cronJob?.spec.jobTemplate.spec.template.spec.volumes as Any[];
    expect(volumes.some((v) => v.configMap?.name === configMap?.metadata.name)).toBe(true);
  });

  it('when the backup connects, then DATABASE_URL_FILE is the DATABASE_URL key of the Secret the API mounts', () => {
    const { mount, volume } = volumeAt(env.DATABASE_URL_FILE);
    expect(mount.readOnly).toBe(true);
    const deployment = parse(readRepo('k8s/base/deployment.yaml'));
    const apiSecret = deployment.spec.template.spec.volumes.find((v: Any) => v.secret)?.secret.secretName;
    expect(volume.secret.secretName).toBe(apiSecret);
    const rel = env.DATABASE_URL_FILE.slice(mount.mountPath.length + 1);
    expect(volume.secret.items.find((i: Any) => i.path === rel)?.key).toBe('DATABASE_URL');
    expect(readRepo('k8s/base/config.env')).toContain(`DATABASE_URL_FILE=${env.DATABASE_URL_FILE}`);
  });

  it('when the client image is pulled, then it is pinned and its pg_dump is at least the PostgreSQL major the stack runs', () => {
    const m = /^postgres:(\d+)\.(\d+)-[a-z]+$/.exec(container.image);
    expect(m, container.image).not.toBeNull();
    const serverMajors = [
      ...`${readRepo('compose.yaml')}${readRepo('k8s/overlays/development/postgres.yaml')}`.matchAll(
        /image: postgres:(\d+)/g,
      ),
    ].map((x) => Number(x[1]));
    expect(serverMajors.length).toBeGreaterThan(0);
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(Math.max(...serverMajors));
    // The script needs bash, which the alpine images lack.
    expect(container.image).not.toMatch(/alpine/);
  });

  it('when the pod runs, then it keeps the API pods security invariants and a bounded run', () => {
    const spec = pod.spec;
    const sc = container.securityContext;
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
    expect(spec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(sc).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    for (const kind of ['requests', 'limits'])
      for (const resource of ['cpu', 'memory']) expect(container.resources[kind][resource]).toBeDefined();
    expect(cron.spec.jobTemplate.spec.backoffLimit).toBeLessThanOrEqual(3);
    expect(cron.spec.jobTemplate.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(cron.spec.successfulJobsHistoryLimit).toBeGreaterThan(0);
    expect(cron.spec.failedJobsHistoryLimit).toBeGreaterThan(0);
    const policy = objects.find((o) => o.kind === 'NetworkPolicy');
    for (const [k, v] of Object.entries(policy.spec.podSelector.matchLabels))
      expect(pod.metadata.labels[k], k).toBe(v);
    expect(policy.spec.egress.flatMap((r: Any) => r.ports.map((p: Any) => p.port))).toContain(5432);
  });
});

describe('docs/operations.md', () => {
  const docs = existsSync(join(ROOT, 'docs/operations.md')) ? readRepo('docs/operations.md') : '';
  const scripts = Object.keys(JSON.parse(readRepo('package.json')).scripts);

  it('when the guide gives a command, then the npm script, repository file or script option exists', () => {
    const npmRuns = [...docs.matchAll(/npm run ([a-z:-]+)/g)].map((m) => m[1]);
    expect(npmRuns.length).toBeGreaterThan(3);
    for (const name of npmRuns) expect(scripts, `npm run ${name}`).toContain(name);
    const paths = [
      ...docs.matchAll(/\b((?:scripts|src|k8s|docker|migrations|monitoring|docs)\/[\w./-]*\w)/g),
    ].map((m) => m[1] as string);
    for (const path of paths) expect(existsSync(join(ROOT, path)), path).toBe(true);
    for (const [script, file] of [
      ['restore.sh', 'scripts/restore.sh'],
      ['backup.sh', 'scripts/backup.sh'],
    ] as const) {
      const text = readRepo(file);
      for (const m of docs.matchAll(new RegExp(`${script.replace('.', '\\.')}[^\\n\`]*`, 'g')))
        for (const option of m[0].matchAll(/\s(--[a-z-]+)/g))
          expect(text, `${script} ${option[1]}`).toContain(option[1]);
    }
  });
});
