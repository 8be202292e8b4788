import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLoggerOptions, createLogDestination } from '../src/lib/logger-options.ts';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { startServer } from './helpers/process.ts';

/** A logger built with the service's options, writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = pino(buildLoggerOptions({ LOG_LEVEL: 'info', SERVICE_NAME: 'svc' }), {
    write(line: string) {
      raw.push(line);
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { logger, lines, text: () => raw.join('') };
}

type Destination = ReturnType<typeof createLogDestination>;

/** Runs with a destination on a scratch file (which the destination owns and closes) and a reader. */
function withDestination(run: (dest: Destination, read: () => string) => Promise<void> | void) {
  return async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'logdest-'));
    const file = path.join(dir, 'out.log');
    const dest = createLogDestination(openSync(file, 'w'));
    try {
      await run(dest, () => readFileSync(file, 'utf8'));
    } finally {
      const closed = once(dest, 'close');
      dest.destroy();
      await closed;
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const ids = (text: string) =>
  text
    .trimEnd()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { i: number }).i);

describe('log line shape', () => {
  it('when a line is written, then it carries the level name, an ISO time and the service', () => {
    const { logger, lines } = capture();
    logger.info({ port: 1 }, 'hello');
    expect(lines[0]).toMatchObject({ level: 'info', service: 'svc', port: 1, msg: 'hello' });
    expect(new Date(String(lines[0]?.time)).toISOString()).toBe(lines[0]?.time);
  });
});

describe('log redaction (REDACT_PATHS)', () => {
  it('when request headers are logged on their own, then the credential headers are redacted', () => {
    const { logger, lines, text } = capture();
    logger.info({
      headers: { authorization: 'Bearer tok-1', cookie: 'sid=ck-2', 'x-api-key': 'sk-3', accept: '*/*' },
    });
    for (const secret of ['tok-1', 'ck-2', 'sk-3']) expect(text()).not.toContain(secret);
    expect(lines[0]?.headers).toEqual({
      authorization: '[redacted]',
      cookie: '[redacted]',
      'x-api-key': '[redacted]',
      accept: '*/*',
    });
  });

  it('when credential headers are logged on req or res, then each is redacted and the other headers are kept', () => {
    const { logger, lines, text } = capture();
    logger.info({
      req: {
        method: 'GET',
        headers: { authorization: 'Bearer tok-1', cookie: 'sid=ck-2', 'x-api-key': 'sk-3', accept: '*/*' },
      },
      res: { statusCode: 200, headers: { 'set-cookie': 'sid=ck-4', 'content-type': 'text/plain' } },
    });
    for (const secret of ['tok-1', 'ck-2', 'sk-3', 'ck-4']) expect(text()).not.toContain(secret);
    expect(lines[0]).toMatchObject({
      req: {
        method: 'GET',
        headers: {
          authorization: '[redacted]',
          cookie: '[redacted]',
          'x-api-key': '[redacted]',
          accept: '*/*',
        },
      },
      res: { statusCode: 200, headers: { 'set-cookie': '[redacted]', 'content-type': 'text/plain' } },
    });
  });

  it('when Redis refuses a login, then its error is logged without the password it carries in command.args', async () => {
    const password = 'redis-password-do-not-print';
    const url = new URL(TEST_REDIS_URL);
    url.username = 'nobody';
    url.password = password;
    const client = new Redis(url.toString(), { lazyConnect: true, retryStrategy: () => null });
    const err = await new Promise<Error & { command?: { args: unknown[] } }>((resolve) => {
      client.once('error', resolve);
      client.connect().catch(() => {});
    });
    client.disconnect();
    expect(err.command?.args).toContain(password); // what makes this path necessary

    const { logger, lines, text } = capture();
    logger.warn({ err }, 'redis unavailable');
    expect(text()).not.toContain(password);
    expect(lines[0]?.err).toMatchObject({ message: err.message, command: { args: '[redacted]' } });
  });

  it('when a line holds none of the redacted paths, then it is written as logged (no scan by field name)', () => {
    const { logger, lines } = capture();
    const line = { method: 'GET', url: '/v1/notes', statusCode: 200, upstream: { authorization: 'kept' } };
    logger.info(line, 'request completed');
    expect(lines[0]).toMatchObject(line);
  });
});

describe('log destination (createLogDestination)', () => {
  it(
    'when many lines are written, then every line arrives once, whole and in order',
    withDestination((dest, read) => {
      const logger = pino({ base: null }, dest);
      for (let i = 0; i < 5000; i++) logger.info({ i, text: 'é😀' }, 'line');
      dest.flushSync();
      const lines = read().trimEnd().split('\n');
      expect(lines).toHaveLength(5000);
      lines.forEach((line, i) => {
        const parsed = JSON.parse(line) as { i: number; text: string };
        expect(parsed.i).toBe(i);
        expect(parsed.text).toBe('é😀');
      });
    }),
  );

  it(
    'when a few lines are logged and nothing flushes, then they are batched and written within the flush interval',
    withDestination(async (dest, read) => {
      const logger = pino({ base: null }, dest);
      for (let i = 0; i < 3; i++) logger.info({ i }, 'quiet');
      expect(read()).toBe(''); // batched, not one write per line
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(ids(read())).toEqual([0, 1, 2]);
    }),
  );

  it(
    'when fatal() is logged, then it and the lines before it are written before it returns',
    withDestination((dest, read) => {
      const logger = pino({ base: null }, dest);
      logger.info({ i: 0 }, 'before');
      logger.fatal({ i: 1 }, 'last words');
      expect(ids(read())).toEqual([0, 1]);
    }),
  );

  it('when the process exits right after logging, then every line is written, in order', () => {
    // 60 lines of ~130 bytes cross the batch size, so some are written and the rest wait for exit.
    const script = [
      "import pino from 'pino';",
      "import { createLogDestination } from './src/lib/logger-options.ts';",
      'const logger = pino({ base: null }, createLogDestination(1));',
      "for (let i = 0; i < 60; i++) logger.info({ i, pad: 'x'.repeat(80) }, 'last words');",
      'process.exit(0);',
    ].join('\n');
    for (let run = 0; run < 3; run++) {
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(ids(out)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    }
  });
});

describe('log lines of the real server when it exits', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db.drop());

  it('when its port is taken, then the fatal line and the lines before it are written and it exits 1', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    const server = await startServer({
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      MIGRATE_ON_START: 'false',
      PORT: String(port),
    });
    try {
      expect(await server.exited).toBe(1);
      const messages = server.logs.map((l) => l.msg);
      expect(messages).toContain('failed to start');
      expect(messages.indexOf('REDIS_URL not set: using in-memory stores')).toBeLessThan(
        messages.indexOf('failed to start'),
      );
      // Logged by app.close() after the fatal line, just before process.exit(1).
      expect(messages.indexOf('postgres pool closed')).toBeGreaterThan(messages.indexOf('failed to start'));
    } finally {
      await server.stop();
      blocker.close();
    }
  });
});

describe('log stream (createLogStream)', () => {
  const run = (pretty: boolean) =>
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        [
          "import { createRequire } from 'node:module';",
          "import pino from 'pino';",
          "import { createLogStream } from './src/lib/logger-options.ts';",
          `const logger = pino({ base: null }, createLogStream({ LOG_PRETTY: ${pretty} }));`,
          "logger.info('hello');",
          'const loaded = Object.keys(createRequire(import.meta.url).cache);',
          "logger.info({ prettyLoaded: loaded.some((f) => f.includes('pino-pretty')) }, 'modules');",
        ].join('\n'),
      ],
      { encoding: 'utf8' },
    );

  it('when LOG_PRETTY is off, then lines are JSON and pino-pretty is never loaded', () => {
    const lines = run(false)
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.msg)).toEqual(['hello', 'modules']);
    expect(lines[1]?.prettyLoaded).toBe(false);
  });

  it('when LOG_PRETTY is on, then lines are human-readable', () => {
    const out = run(true);
    expect(out).toContain('hello');
    expect(out.startsWith('{')).toBe(false);
    expect(out).toContain('prettyLoaded: true');
  });
});
