import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/lib/migrations.ts';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/migrations', import.meta.url));

async function rows(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('migrations', () => {
  let db: TestDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('when two runners start together, then each migration is applied exactly once', async () => {
    db = await createTestDatabase({ migrated: false });
    const url = db.url;
    const results = await Promise.all([
      migrate({ databaseUrl: url, dir: FIXTURES }),
      migrate({ databaseUrl: url, dir: FIXTURES }),
    ]);
    // One runner applied both; the other waited on the advisory lock and found nothing left to do.
    expect(results.map((r) => r.length).sort()).toEqual([0, 2]);
    expect(await rows(url, 'SELECT name FROM pgmigrations ORDER BY id')).toEqual([
      { name: '1700000000000_first' },
      { name: '1700000000001_second' },
    ]);
    expect(await rows(url, 'SELECT id FROM race_probe ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('when migrating down, then the last migration is reverted, and up re-applies it', async () => {
    db = await createTestDatabase({ migrated: false });
    await migrate({ databaseUrl: db.url, dir: FIXTURES });
    expect(await migrate({ databaseUrl: db.url, dir: FIXTURES, direction: 'down' })).toEqual([
      '1700000000001_second',
    ]);
    expect(await rows(db.url, 'SELECT id FROM race_probe')).toEqual([{ id: 1 }]);
    expect(await migrate({ databaseUrl: db.url, dir: FIXTURES })).toEqual(['1700000000001_second']);
  });

  it("when the project's migrations run on an empty database, then they apply cleanly and up is idempotent", async () => {
    db = await createTestDatabase({ migrated: false });
    await migrate({ databaseUrl: db.url });
    expect(await migrate({ databaseUrl: db.url })).toEqual([]);
  });
});
