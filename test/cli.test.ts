import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SCOPES } from '../src/scopes.ts';
import { buildTestApp, createTestDatabase, type TestApp, type TestDatabase } from './helpers/app.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';

function cli(script: string, args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, [`src/cli/${script}.ts`, ...args], {
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: result.status, stdout: result.stdout.trim(), stderr: result.stderr };
}

describe('auth CLI against the real database', () => {
  let t: TestApp;
  let env: Record<string, string>;
  beforeAll(async () => {
    const prefix = `test:${randomUUID().slice(0, 8)}:`;
    // cli() runs each command with spawnSync, which stalls this process's event loop (the app's) for the
    // command's whole run; load shedding would read that stall as overload and answer 503.
    t = await buildTestApp({ redisPrefix: prefix, env: { PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' } });
    env = {
      DATABASE_URL: t.db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_KEY_PREFIX: prefix,
      MIGRATE_ON_START: 'false',
    };
  });
  afterAll(async () => {
    await t.close();
    await t.db.drop();
  });

  it('when a key is created, then it is printed once on stdout and works; revoking it stops it at once', async () => {
    const created = cli('auth', ['create-api-key', '--name', 'ci', '--scopes', 'admin'], env);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^sk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const me = await request(t.app.server).get('/v1/me').set('x-api-key', created.stdout);
    expect(me.body).toMatchObject({ subject: 'ci', scopes: ['admin'], kind: 'api_key' });

    const id = me.body.keyId as string;
    const revoked = cli('auth', ['revoke-api-key', id], env);
    expect(revoked.code).toBe(0);
    // The CLI's process announces the revocation to running servers; delivery is asynchronous.
    await vi.waitFor(
      async () =>
        expect((await request(t.app.server).get('/v1/me').set('x-api-key', created.stdout)).status).toBe(401),
      { timeout: 5_000, interval: 50 },
    );
    expect(cli('auth', ['revoke-api-key', id], env).code).toBe(1);
  });

  it('when a token is generated for local testing, then the server accepts it', async () => {
    const out = cli('auth', ['generate-jwt-token', '--sub', 'alice', '--scopes', 'admin'], env);
    expect(out.code).toBe(0);
    const me = await request(t.app.server).get('/v1/me').set('authorization', `Bearer ${out.stdout}`);
    expect(me.body).toEqual({ subject: 'alice', scopes: ['admin'], kind: 'jwt', keyId: null });
  });

  it('when a JWT secret is generated, then it is 64 base64url characters (48 random bytes)', () => {
    const a = cli('auth', ['generate-jwt-secret'], {});
    const b = cli('auth', ['generate-jwt-secret'], {});
    expect(a.stdout).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(a.stdout).not.toBe(b.stdout);
  });

  it('when a scope is not declared in src/scopes.ts, then it exits 2 naming it and creates nothing', async () => {
    for (const command of [
      ['create-api-key', '--name', 'typo', '--scopes', 'admin,admn'],
      ['generate-jwt-token', '--sub', 'typo', '--scopes', 'admin,admn'],
    ]) {
      const out = cli('auth', command, env);
      expect(out.code).toBe(2);
      expect(out.stderr).toContain(`unknown scope: admn (known: ${SCOPES.join(', ')})`);
      expect(out.stdout).toBe('');
    }
    const { rows } = await t.app.db.query(`SELECT id FROM api_keys WHERE name = 'typo'`);
    expect(rows).toEqual([]);
  });

  it('when arguments are missing or invalid, then it exits 2 with usage', () => {
    expect(cli('auth', ['create-api-key', '--name', 'x'], env).code).toBe(2);
    expect(cli('auth', ['create-api-key', '--name', 'x', '--scopes', 'BAD SCOPE'], env).code).toBe(2);
    expect(cli('auth', ['revoke-api-key', 'nope'], env).code).toBe(2);
    const unknown = cli('auth', ['frobnicate'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('usage:');
  });
});

describe('migrate CLI', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(() => db.drop());

  it('when run up, down and up again, then the schema follows', () => {
    const env = { DATABASE_URL: db.url };
    const up = cli('migrate', ['up'], env);
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/^applied: /);
    expect(cli('migrate', ['up'], env).stdout).toBe('nothing to do');
    expect(cli('migrate', ['down'], env).stdout).toMatch(/^reverted: /);
    expect(cli('migrate', ['up'], env).stdout).toMatch(/^applied: /);
    expect(cli('migrate', ['sideways'], env).code).toBe(2);
  });
});
