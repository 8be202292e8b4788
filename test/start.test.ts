// `npm start` runs the TypeScript source as it is: a forker's new module works the way it does in tests.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { type ServerProcess, startProcess } from './helpers/process.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** A throwaway feature module: reads a file next to itself at load time and import()s a sibling. */
const PROBE_ROUTES = `
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const greeting = readFileSync(new URL('./greeting.txt', import.meta.url), 'utf8').trim();

export default async function probeRoutes(app: FastifyInstance) {
  const { shout } = await import('./probe-shout.ts');
  app.get('/probe', { config: { rateLimit: false } }, async () => ({ greeting, shouted: shout(greeting) }));
}
`;
const PROBE_SHOUT = `export const shout = (text: string): string => \`\${text.toUpperCase()}!\`;\n`;

describe('npm start in a fork with a new module', () => {
  let db: TestDatabase;
  let fork: string;
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    // A scratch copy of the project, as a forker's checkout: the source, migrations, package.json,
    // and the installed dependencies (linked, not reinstalled).
    fork = mkdtempSync(join(tmpdir(), 'fork-'));
    for (const entry of ['package.json', 'src', 'migrations'])
      cpSync(join(ROOT, entry), join(fork, entry), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(fork, 'node_modules'), 'dir');
    const probe = join(fork, 'src/modules/probe');
    mkdirSync(probe);
    writeFileSync(join(probe, 'probe-routes.ts'), PROBE_ROUTES);
    writeFileSync(join(probe, 'probe-shout.ts'), PROBE_SHOUT);
    writeFileSync(join(probe, 'greeting.txt'), 'hello from the fork\n');
    // Registered in app.ts among the public routes, as the README tells a forker to do.
    const appFile = join(fork, 'src/app.ts');
    const app = readFileSync(appFile, 'utf8');
    const anchor = 'await app.register(healthRoutes);';
    expect(app).toContain(anchor);
    writeFileSync(
      appFile,
      app.replace(
        anchor,
        `${anchor}\n  await app.register((await import('./modules/probe/probe-routes.ts')).default);`,
      ),
    );
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(fork, { recursive: true, force: true });
    await db.drop();
  });

  it('when the module reads a file next to itself and uses import(), then the started service serves it', async () => {
    server = await startProcess('npm', ['start'], { NODE_ENV: 'test', DATABASE_URL: db.url }, { cwd: fork });
    const ready = await server.waitForLog('ready', 30_000);
    // Node's own compile cache is on for every start.
    expect(typeof ready.compileCacheDir).toBe('string');
    const res = await fetch(`http://127.0.0.1:${server.port}/probe`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ greeting: 'hello from the fork', shouted: 'HELLO FROM THE FORK!' });
  }, 60_000);
});
