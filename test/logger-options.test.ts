import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createLogDestination, scrubSecrets } from '../src/lib/logger-options.ts';

describe('log redaction (scrubSecrets)', () => {
  it('when secret-named fields appear in the logged object or three levels below it, in any case, then they are replaced', () => {
    const input = {
      password: 'p1',
      user: {
        name: 'a',
        Token: 't1',
        profile: { apiKey: 'k1', deeper: { secret: 's1', deepest: { token: 'past the limit' } } },
      },
      list: [{ access_token: 'a1' }, 'plain'],
      headers: { authorization: 'Bearer x', 'x-api-key': 'sk', accept: '*/*' },
    };
    expect(scrubSecrets(input)).toEqual({
      password: '[redacted]',
      user: {
        name: 'a',
        Token: '[redacted]',
        profile: {
          apiKey: '[redacted]',
          deeper: { secret: '[redacted]', deepest: { token: 'past the limit' } },
        },
      },
      list: [{ access_token: '[redacted]' }, 'plain'],
      headers: { authorization: '[redacted]', 'x-api-key': '[redacted]', accept: '*/*' },
    });
  });

  it('when nothing is secret, then the very same object is returned (no copy on the hot path)', () => {
    const line = { method: 'GET', url: '/health', statusCode: 200, durationMs: 1.2 };
    expect(scrubSecrets(line)).toBe(line);
  });

  it("when a field is redacted, then the caller's object is left unchanged", () => {
    const body = { name: 'x', nested: { token: 'keep-me-in-memory' } };
    scrubSecrets({ body });
    expect(body.nested.token).toBe('keep-me-in-memory');
  });

  it('when values are errors, dates or buffers, then they are passed through for their serializers', () => {
    const err = Object.assign(new Error('boom'), { token: 'not-a-plain-object-field' });
    const out = scrubSecrets({ err, at: new Date(0), raw: Buffer.from('x') });
    expect(out.err).toBe(err);
    expect(out.at).toBeInstanceOf(Date);
  });
});

describe('log destination (createLogDestination)', () => {
  it('when many lines are written, then every line arrives once, whole and in order', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'logdest-'));
    const file = path.join(dir, 'out.log');
    const fd = openSync(file, 'w');
    try {
      const dest = createLogDestination(fd);
      const logger = pino({ base: null }, dest);
      for (let i = 0; i < 5000; i++) logger.info({ i, text: 'é😀' }, 'line');
      await new Promise<void>((resolve, reject) =>
        dest.flush((err?: Error) => (err ? reject(err) : resolve())),
      );
      logger.info({ i: 5000 }, 'after flush');
      dest.flushSync(); // what pino does on process exit
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines).toHaveLength(5001);
      lines.forEach((line, i) => {
        const parsed = JSON.parse(line) as { i: number; text?: string };
        expect(parsed.i).toBe(i);
        if (i < 5000) expect(parsed.text).toBe('é😀');
      });
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when a few lines are logged and nothing flushes, then they are written within the batching delay', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'logdest-'));
    const file = path.join(dir, 'out.log');
    const fd = openSync(file, 'w');
    try {
      const logger = pino({ base: null }, createLogDestination(fd));
      for (let i = 0; i < 3; i++) logger.info({ i }, 'quiet');
      expect(readFileSync(file, 'utf8')).toBe(''); // batched, not one write per line
      await new Promise((resolve) => setTimeout(resolve, 300));
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual([0, 1, 2]);
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when the process exits right after logging, then the batched lines are written before it ends', () => {
    const script = [
      "import pino from 'pino';",
      "import { createLogDestination } from './src/lib/logger-options.ts';",
      'const logger = pino({ base: null }, createLogDestination(1));',
      "for (let i = 0; i < 3; i++) logger.info({ i }, 'last words');",
      'process.exit(0);',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    const lines = out.trimEnd().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual([0, 1, 2]);
  });
});
