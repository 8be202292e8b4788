// The bundled dist/server.js (what `npm start` and the image run) works where the tsx-run source does.
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/app.js';
import { TEST_REDIS_URL } from './helpers/env.js';
import { startServer } from './helpers/process.js';

describe('the bundled server', () => {
  let db: TestDatabase;
  let root: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    // A package laid out like the image: package.json, migrations/ and node_modules/ next to dist/.
    root = mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
    mkdirSync(path.join(root, 'dist'));
    copyFileSync('package.json', path.join(root, 'package.json'));
    symlinkSync(path.resolve('migrations'), path.join(root, 'migrations'));
    symlinkSync(path.resolve('node_modules'), path.join(root, 'node_modules'));
    // The code cache is made under the V8 flags of the process that builds it: none, like the servers below.
    const { NODE_OPTIONS: _ignored, ...buildEnv } = process.env;
    execFileSync(process.execPath, ['scripts/bundle.mjs', '--outdir', path.join(root, 'dist')], {
      env: buildEnv,
    });
    // ASCII only: V8 would otherwise hold the whole bundle's source as two-byte characters.
    expect(readFileSync(path.join(root, 'dist/server.bundle.cjs')).some((byte) => byte > 0x7f)).toBe(false);
  }, 60_000);
  afterAll(async () => {
    await db.drop();
    rmSync(root, { recursive: true, force: true });
  });

  it('when started in production, then it serves, finds package.json, and flushes every log line on SIGTERM', async () => {
    const server = await startServer(
      {
        NODE_ENV: 'production',
        DATABASE_URL: db.url,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_KEY_PREFIX: `bundle:${process.pid}:`,
        JWT_SECRET: 'x'.repeat(64),
        SHUTDOWN_DELAY_MS: '0',
      },
      path.join(root, 'dist/server.js'),
    );
    const ready = await server.waitForLog('ready');
    // The build's code cache matched the bundle and this Node.js, so V8 compiled nothing it held.
    expect(ready.compileCache).toBe('used');
    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/ready`)).status).toBe(200);
    const health = (await (await fetch(`${base}/health`)).json()) as { version: string };
    expect(health.version).toBe(
      (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version,
    );
    expect((await fetch(`${base}/openapi.json`)).status).toBe(200);
    expect((await fetch(`${base}/docs`)).status).toBe(404); // docs are off in production
    for (let i = 0; i < 200; i++) await fetch(`${base}/health`);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const access = server.logs.filter((l) => l.msg === 'request completed');
    expect(access.length).toBe(204);
    // Logged just before process.exit(): it arrives only if the exit handler flushed the buffer.
    expect(server.logs.map((l) => l.msg)).toContain('shutdown: complete');
  });

  it('when MIGRATE_ON_START is on, then node-pg-migrate (kept outside the bundle) runs from it', async () => {
    const server = await startServer(
      { NODE_ENV: 'test', DATABASE_URL: db.url, MIGRATE_ON_START: 'true', SHUTDOWN_DELAY_MS: '0' },
      path.join(root, 'dist/server.js'),
    );
    await server.waitForLog('ready');
    expect(server.logs.some((l) => l.msg === 'migrations up to date')).toBe(true);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('when the bundle no longer matches its code cache, then the cache is not used and the server still starts', async () => {
    const bundle = path.join(root, 'dist/server.bundle.cjs');
    const original = readFileSync(bundle);
    // Same length, other bytes (the final newline as a space): V8's own check compares the source's
    // length only, so it would take the stale cache; the SHA-256 in front of it must not.
    const changed = Buffer.from(original);
    changed[changed.length - 1] = 0x20;
    writeFileSync(bundle, changed);
    try {
      await expectServes({}, 'none');
    } finally {
      writeFileSync(bundle, original);
    }
  });

  it('when source maps are on, then Node loads the bundle itself (so it can map stack traces), without the code cache', async () => {
    await expectServes({ NODE_OPTIONS: '--enable-source-maps' }, 'off');
  });

  /** Starts the bundled server, checks how it loaded the bundle and that it serves, then stops it. */
  async function expectServes(env: Record<string, string>, compileCache: string) {
    const server = await startServer(
      { NODE_ENV: 'test', DATABASE_URL: db.url, SHUTDOWN_DELAY_MS: '0', ...env },
      path.join(root, 'dist/server.js'),
    );
    const ready = await server.waitForLog('ready');
    expect(ready.compileCache).toBe(compileCache);
    expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }
});
