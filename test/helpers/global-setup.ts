// Builds one migrated template database per run; each test file clones it (CREATE DATABASE ... TEMPLATE).
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/lib/migrations.ts';
import { databaseUrl, TEST_PG_ADMIN_URL } from './env.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export default async function setup(project: TestProject) {
  const name = `tmpl_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await admin.connect();
  try {
    // Databases left by an interrupted run: their names carry the creating process id. Only dead
    // processes' databases go, so two suites running at once never drop each other's.
    const candidates = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname ~ '^(tmpl|t)_[0-9]+_'`,
    );
    for (const { datname } of candidates.rows) {
      const pid = Number(datname.split('_')[1]);
      if (!isAlive(pid)) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  await migrate({ databaseUrl: databaseUrl(name) });
  project.provide('templateDatabase', name);

  return async () => {
    const client = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.end();
  };
}
