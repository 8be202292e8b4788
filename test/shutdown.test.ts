import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { startServer } from './helpers/process.ts';

describe('graceful shutdown of the real process', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  const env = () => ({
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    REDIS_URL: TEST_REDIS_URL,
    MIGRATE_ON_START: 'false',
  });

  it('when SIGTERM arrives, then readiness fails during the delay, every step is logged and it exits 0', async () => {
    const server = await startServer({ ...env(), SHUTDOWN_DELAY_MS: '1500' });
    await server.waitForLog('ready');
    const base = `http://127.0.0.1:${server.port}`;
    expect((await fetch(`${base}/ready`)).status).toBe(200);

    server.child.kill('SIGTERM');
    await server.waitForLog('shutdown: readiness now failing');
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { status: string }).status).toBe('shutting_down');
    // Still serving other routes while load balancers catch up.
    expect((await fetch(`${base}/health`)).status).toBe(200);

    expect(await server.exited).toBe(0);
    const steps = server.logs.map((l) => String(l.msg));
    const at = (msg: string) => steps.indexOf(msg);
    for (const step of ['postgres pool closed', 'redis closed', 'shutdown: complete'])
      expect(steps).toContain(step);
    // Readiness fails first, then the listener closes, and the process reports completion after the pool.
    expect(at('shutdown: readiness now failing')).toBeLessThan(
      at('shutdown: closing listener and draining in-flight requests'),
    );
    expect(at('shutdown: closing listener and draining in-flight requests')).toBeLessThan(
      at('postgres pool closed'),
    );
    expect(at('postgres pool closed')).toBeLessThan(at('shutdown: complete'));
  });

  it('when a request never finishes, then shutdown gives up after SHUTDOWN_TIMEOUT_MS and exits 1', async () => {
    const server = await startServer({ ...env(), SHUTDOWN_DELAY_MS: '0', SHUTDOWN_TIMEOUT_MS: '800' });
    await server.waitForLog('ready');
    // A request whose body never completes keeps the connection in flight.
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      'POST /openapi.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    );
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(server.logs.some((l) => l.msg === 'shutdown: timed out, exiting')).toBe(true);
    socket.destroy();
  });

  it('when a second signal arrives during shutdown, then it exits 1 at once', async () => {
    const server = await startServer({ ...env(), SHUTDOWN_DELAY_MS: '10000' });
    await server.waitForLog('ready');
    server.child.kill('SIGTERM');
    await server.waitForLog('shutdown: readiness now failing');
    server.child.kill('SIGINT');
    expect(await server.exited).toBe(1);
    expect(server.logs.some((l) => l.msg === 'second signal during shutdown: exiting now')).toBe(true);
  });
});
