import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/app.ts';
import { TEST_REDIS_URL } from '../helpers/env.ts';
import { startServer } from '../helpers/process.ts';
import { send, startLoad } from './load.ts';

describe('graceful drain of a real server process under keep-alive load', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('when SIGTERM arrives mid-load with a slow upload in flight, then readiness fails first, every request completes and it exits 0', async () => {
    const server = await startServer({
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_KEY_PREFIX: `drain:${process.pid}:`,
      MIGRATE_ON_START: 'false',
      SHUTDOWN_DELAY_MS: '1500',
      SHUTDOWN_TIMEOUT_MS: '5000',
      RATE_LIMIT_MAX_REQUESTS: '1000000',
      RATE_LIMIT_WINDOW_MS: '1000',
    });
    await server.waitForLog('ready');
    const port = server.port;
    const token = await mintToken();
    const auth = { authorization: `Bearer ${token}` };
    const created = await postJson(port, '/v1/api-keys', { name: 'drain', scopes: ['admin'] }, auth);
    expect(created.status).toBe(201);

    // Steady keep-alive load, as a load balancer's connection pool would send it.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const load = startLoad({
      port,
      concurrency: 8,
      maxMs: 10_000,
      agent,
      // A database read on every request: the pool must keep serving until the last one is answered.
      next: () => ({ path: '/v1/api-keys?limit=5', headers: auth }),
    });

    // A slow upload: headers and half the body now, the rest after the listener has closed.
    const body = JSON.stringify({
      name: 'slow upload',
      subject: `uploader-${'x'.repeat(150)}`,
      scopes: ['admin'],
    });
    const slow = new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/api-keys',
          headers: { ...auth, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 20));
      setTimeout(() => req.end(body.slice(20)), 2600);
    });

    await new Promise((r) => setTimeout(r, 400));
    const signalledAt = Date.now();
    server.child.kill('SIGTERM');
    await server.waitForLog('shutdown: readiness now failing');
    const ready = await send(port, { path: '/ready' });
    expect(ready.status).toBe(503);

    // The load balancer notices within the delay and stops sending; until then everything is served.
    await new Promise((r) => setTimeout(r, 700));
    const samples = await load.stop();
    agent.destroy();

    expect(await slow).toBe(201);
    const code = await server.exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(1500 + 5000);
    expect(samples.length).toBeGreaterThan(50);
    expect(samples.filter((s) => s.status !== 200)).toEqual([]);
    const steps = server.logs.map((l) => l.msg);
    expect(steps.indexOf('shutdown: readiness now failing')).toBeLessThan(
      steps.indexOf('shutdown: complete'),
    );
  });
});

async function postJson(port: number, path: string, body: unknown, headers: Record<string, string>) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, ...((await res.json()) as { id: string }) };
}

/** Signed with the development secret the server falls back to outside production. */
async function mintToken(): Promise<string> {
  const { createSigner } = await import('fast-jwt');
  const { DEVELOPMENT_JWT_SECRET } = await import('../../src/config.ts');
  const now = Math.floor(Date.now() / 1000);
  return createSigner({ key: DEVELOPMENT_JWT_SECRET, noTimestamp: true })({
    sub: 'drainer',
    scope: 'admin',
    jti: `drain-${now}`,
    iss: 'api-service',
    aud: 'api',
    iat: now,
    exp: now + 600,
  });
}
