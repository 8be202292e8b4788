import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, maskConfig } from '../src/config.ts';

const STRONG_SECRET = 'k3Jd9-aLq0ZpX7vR2mN8sT4wY6uB1cE5gH0iO3';
const PROD_OK = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://app:pw@db.internal:5432/app',
  JWT_SECRET: STRONG_SECRET,
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config: defaults and parsing', () => {
  it('when nothing is set, then development defaults apply', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      NODE_ENV: 'development',
      HOST: '0.0.0.0',
      PORT: 3000,
      BODY_LIMIT: 1048576,
      LOG_PRETTY: true,
      MIGRATE_ON_START: true,
      DOCS_ENABLED: true,
      SHUTDOWN_DELAY_MS: 0,
      TRUST_PROXY: false,
      CORS_ORIGINS: [],
    });
    expect(c.DATABASE_URL).toBeUndefined();
  });

  it('when production is valid, then production defaults apply', () => {
    const c = loadConfig(PROD_OK);
    expect(c).toMatchObject({
      isProduction: true,
      LOG_PRETTY: false,
      MIGRATE_ON_START: false,
      DOCS_ENABLED: false,
      SHUTDOWN_DELAY_MS: 5000,
    });
  });

  it('when lists and proxy settings are given, then they are parsed', () => {
    const c = loadConfig({ CORS_ORIGINS: 'https://a.example, https://b.example', TRUST_PROXY: '2' });
    expect(c.CORS_ORIGINS).toEqual(['https://a.example', 'https://b.example']);
    expect(c.TRUST_PROXY).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }).TRUST_PROXY).toEqual([
      '10.0.0.0/8',
      '127.0.0.1',
    ]);
  });

  it('when an enum value is unknown, then it fails in every environment naming the variable', () => {
    for (const NODE_ENV of ['development', 'test', 'production']) {
      const problems = problemsOf({ ...PROD_OK, NODE_ENV, LOG_LEVEL: 'loud' });
      expect(problems.some((p) => p.startsWith('LOG_LEVEL:'))).toBe(true);
    }
    expect(problemsOf({ NODE_ENV: 'staging' })[0]).toMatch(/^NODE_ENV:/);
  });

  it('when a number is out of range or not a number, then the variable is named', () => {
    const problems = problemsOf({ PORT: 'eighty', BODY_LIMIT: '-1' });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['BODY_LIMIT', 'PORT']);
  });
});

describe('config: secrets from files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));

  it('when JWT_SECRET_FILE is set, then the file content (without trailing newline) is the secret', () => {
    const file = join(dir, 'jwt');
    writeFileSync(file, `${STRONG_SECRET}\n`);
    expect(loadConfig({ JWT_SECRET_FILE: file }).JWT_SECRET).toBe(STRONG_SECRET);
  });

  it('when DATABASE_URL_FILE and REDIS_URL_FILE are set, then both are read', () => {
    writeFileSync(join(dir, 'db'), 'postgres://u:p@h:5432/d');
    writeFileSync(join(dir, 'redis'), 'redis://:pw@h:6379');
    const c = loadConfig({ DATABASE_URL_FILE: join(dir, 'db'), REDIS_URL_FILE: join(dir, 'redis') });
    expect(c.DATABASE_URL).toBe('postgres://u:p@h:5432/d');
    expect(c.REDIS_URL).toBe('redis://:pw@h:6379');
  });

  it('when both a secret and its _FILE are set, then it is an error', () => {
    writeFileSync(join(dir, 'jwt2'), STRONG_SECRET);
    expect(problemsOf({ JWT_SECRET: STRONG_SECRET, JWT_SECRET_FILE: join(dir, 'jwt2') })).toEqual([
      'JWT_SECRET and JWT_SECRET_FILE are both set: use one',
    ]);
  });

  it('when the _FILE cannot be read, then it is an error naming the variable', () => {
    expect(problemsOf({ REDIS_URL_FILE: join(dir, 'missing') })[0]).toMatch(/^REDIS_URL_FILE: cannot read/);
  });
});

describe('config: production guardrails', () => {
  it('when every guardrail is violated, then every problem is listed at once', () => {
    const problems = problemsOf({
      NODE_ENV: 'production',
      CORS_ORIGINS: '*',
      TRUST_PROXY: 'true',
      DOCS_ENABLED: 'true',
      LOG_PRETTY: 'true',
    });
    expect(problems).toEqual([
      'JWT_SECRET is required in production',
      'CORS_ORIGINS must list origins explicitly, not *',
      'DATABASE_URL is required in production (no embedded database)',
      'TRUST_PROXY=true trusts any client-supplied X-Forwarded-For: give a hop count or proxy addresses',
      'DOCS_ENABLED=true in production requires ALLOW_IN_PRODUCTION to include docs',
      'LOG_PRETTY=true in production requires ALLOW_IN_PRODUCTION to include pretty-logs',
    ]);
  });

  it.each([
    ['a placeholder', 'changeme', 'JWT_SECRET is a known placeholder value'],
    [
      'the .env.example value',
      'development-only-secret-change-me-0123456789',
      'JWT_SECRET is a known placeholder value',
    ],
    ['too short', 'short-but-not-a-placeholder', 'JWT_SECRET must be at least 32 bytes'],
  ])('when the JWT secret is %s, then production refuses it', (_what, secret, message) => {
    expect(problemsOf({ ...PROD_OK, JWT_SECRET: secret })).toEqual([message]);
  });

  it('when docs and pretty logs are explicitly opted in, then production accepts them', () => {
    const c = loadConfig({
      ...PROD_OK,
      DOCS_ENABLED: 'true',
      LOG_PRETTY: 'true',
      ALLOW_IN_PRODUCTION: 'docs,pretty-logs',
    });
    expect(c.DOCS_ENABLED && c.LOG_PRETTY).toBe(true);
  });

  it('when a hop count or proxy list is trusted, then production accepts it', () => {
    expect(loadConfig({ ...PROD_OK, TRUST_PROXY: '1' }).TRUST_PROXY).toBe(1);
  });

  it('when problems are reported, then no secret value is echoed', () => {
    const problems = problemsOf({
      NODE_ENV: 'production',
      JWT_SECRET: 'tiny-secret-value',
      DATABASE_URL: 'mysql://user:hunter2@h/d',
    });
    const text = problems.join('\n');
    expect(problems.length).toBeGreaterThanOrEqual(2);
    expect(text).not.toContain('tiny-secret-value');
    expect(text).not.toContain('hunter2');
  });
});

describe('config: masking for the startup log', () => {
  it('when the config is masked, then secrets and URL passwords are hidden', () => {
    const masked = maskConfig(
      loadConfig({ ...PROD_OK, REDIS_URL: 'redis://:redispw@cache:6379', JWT_SECRET: STRONG_SECRET }),
    );
    const text = JSON.stringify(masked);
    expect(text).not.toContain(STRONG_SECRET);
    expect(text).not.toContain(':pw@');
    expect(text).not.toContain('redispw');
    expect(masked.JWT_SECRET).toBe('[redacted]');
    expect(masked.DATABASE_URL).toBe('postgres://app:***@db.internal:5432/app');
  });
});

describe('config: the process refuses to start', () => {
  it('when production config is unsafe, then the server exits non-zero listing every problem', () => {
    const result = spawnSync(process.execPath, ['src/main.ts'], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        JWT_SECRET: 'hunter2hunter2',
        CORS_ORIGINS: '*',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(78);
    expect(result.stderr).toContain('JWT_SECRET must be at least 32 bytes');
    expect(result.stderr).toContain('CORS_ORIGINS must list origins explicitly, not *');
    expect(result.stderr).toContain('DATABASE_URL is required in production');
    expect(result.stderr).not.toContain('hunter2hunter2');
  });
});

describe('config: JWT modes and tools', () => {
  it('when RS256 is configured with a key file, then production needs no JWT_SECRET', () => {
    const c = loadConfig({
      NODE_ENV: 'production',
      DATABASE_URL: 'postgres://app:pw@db:5432/app',
      JWT_ALGORITHM: 'RS256',
      JWT_PUBLIC_KEY_FILES: 'package.json',
    });
    expect(c.JWT_SECRET).toBeUndefined();
  });

  it('when RS256 is configured without key files, then it is an error in every environment', () => {
    expect(problemsOf({ JWT_ALGORITHM: 'RS256' })).toEqual([
      'JWT_PUBLIC_KEY_FILES or JWT_PRIVATE_KEY_FILE is required with JWT_ALGORITHM=RS256',
    ]);
  });

  it('when a tool that never touches tokens loads production config, then the JWT guardrails are skipped, the others not', () => {
    expect(() =>
      loadConfig(
        { NODE_ENV: 'production', DATABASE_URL: 'postgres://app:pw@db:5432/app' },
        { withoutJwt: true },
      ),
    ).not.toThrow();
    expect(() => loadConfig({ NODE_ENV: 'production' }, { withoutJwt: true })).toThrow(
      /DATABASE_URL is required/,
    );
  });

  it('when a verify-only JWT secret is weak, then production refuses it; lists may be comma or newline separated', () => {
    expect(problemsOf({ ...PROD_OK, JWT_VERIFY_SECRETS: `${STRONG_SECRET},changeme` })).toEqual([
      'JWT_VERIFY_SECRETS: every secret must be at least 32 bytes and not a placeholder',
    ]);
    expect(loadConfig({ JWT_VERIFY_SECRETS: 'a\nb, c' }).JWT_VERIFY_SECRETS).toEqual(['a', 'b', 'c']);
  });

  it('when APP_VERSION is set, then it is part of the config', () => {
    expect(loadConfig({ APP_VERSION: '1.2.3+abc' }).APP_VERSION).toBe('1.2.3+abc');
  });
});

describe('config: PgBouncer and the migration URL', () => {
  const DB = 'postgres://app:pw@pgbouncer.internal:6432/app';
  const DIRECT = 'postgres://migrator:secretpw@db.internal:5432/app';

  it('when nothing is set, then the pool mode is session and migrations use DATABASE_URL', () => {
    const c = loadConfig({ DATABASE_URL: DB });
    expect(c.DATABASE_POOL_MODE).toBe('session');
    expect(c.MIGRATE_DATABASE_URL).toBeUndefined();
  });

  it('when transaction mode migrates on start, then MIGRATE_DATABASE_URL is required; with it, or without migrating, it loads', () => {
    expect(problemsOf({ DATABASE_URL: DB, DATABASE_POOL_MODE: 'transaction' })).toEqual([
      'DATABASE_POOL_MODE=transaction with MIGRATE_ON_START requires MIGRATE_DATABASE_URL (a direct URL: migrations hold a session lock)',
    ]);
    const c = loadConfig({
      DATABASE_URL: DB,
      DATABASE_POOL_MODE: 'transaction',
      MIGRATE_DATABASE_URL: DIRECT,
    });
    expect(c.DATABASE_POOL_MODE).toBe('transaction');
    expect(c.MIGRATE_DATABASE_URL).toBe(DIRECT);
    expect(
      loadConfig({ ...PROD_OK, DATABASE_URL: DB, DATABASE_POOL_MODE: 'transaction' }).MIGRATE_ON_START,
    ).toBe(false);
  });

  it('when transaction mode or a migration URL comes without DATABASE_URL, or a value is malformed, then each is named', () => {
    expect(problemsOf({ DATABASE_POOL_MODE: 'transaction', MIGRATE_ON_START: 'false' })).toEqual([
      'DATABASE_POOL_MODE=transaction requires DATABASE_URL (the embedded database has no pooler)',
    ]);
    expect(problemsOf({ MIGRATE_DATABASE_URL: DIRECT })).toEqual([
      'MIGRATE_DATABASE_URL requires DATABASE_URL',
    ]);
    expect(
      problemsOf({ DATABASE_URL: DB, MIGRATE_DATABASE_URL: 'mysql://x@h/d', DATABASE_POOL_MODE: 'statement' })
        .map((p) => p.split(':')[0])
        .sort(),
    ).toEqual(['DATABASE_POOL_MODE', 'MIGRATE_DATABASE_URL']);
  });

  it('when MIGRATE_DATABASE_URL_FILE is set, then the file is read, and the startup log masks its password', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'migrate');
    writeFileSync(file, `${DIRECT}\n`);
    const c = loadConfig({ DATABASE_URL: DB, MIGRATE_DATABASE_URL_FILE: file });
    expect(c.MIGRATE_DATABASE_URL).toBe(DIRECT);
    expect(maskConfig(c).MIGRATE_DATABASE_URL).toBe('postgres://migrator:***@db.internal:5432/app');
    expect(
      problemsOf({ DATABASE_URL: DB, MIGRATE_DATABASE_URL: DIRECT, MIGRATE_DATABASE_URL_FILE: file }),
    ).toEqual(['MIGRATE_DATABASE_URL and MIGRATE_DATABASE_URL_FILE are both set: use one']);
  });
});
