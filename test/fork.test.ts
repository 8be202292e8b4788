// A forker's first acts, in scratch copies of the project: scaffold a resource, delete the example one
// (items; in a fork that already deleted it, a freshly scaffolded one, fork-probes, stands in).
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);

/** The project's files (tracked and new, never ignored ones) with node_modules linked, as a checkout. */
function copyProject(): string {
  const copy = mkdtempSync(join(tmpdir(), 'fork-'));
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((f) => f !== '' && existsSync(join(ROOT, f)));
  for (const file of files) {
    mkdirSync(dirname(join(copy, file)), { recursive: true });
    cpSync(join(ROOT, file), join(copy, file));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
  execFileSync('git', ['init', '-q'], { cwd: copy });
  return copy;
}

/** Runs a command in the copy; its output is the failure message when it fails. */
function run(cwd: string, command: string, args: string[], timeout = 120_000): string {
  const { FORCE_COLOR: _, ...env } = process.env; // plain text, so the summary lines can be matched
  try {
    return execFileSync(command, args, {
      cwd,
      encoding: 'utf8',
      stdio: 'pipe',
      timeout,
      env: { ...env, NO_COLOR: '1' },
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
}

const resource = (cwd: string, ...args: string[]) =>
  run(cwd, process.execPath, ['scripts/resource.ts', ...args]);
const vitest = (cwd: string, files: string[]) =>
  run(cwd, process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...files], 240_000);

describe('npm run new:resource', () => {
  let copy: string;
  beforeAll(() => {
    copy = copyProject();
  });
  afterAll(() => rmSync(copy, { recursive: true, force: true }));

  it('when a resource is scaffolded, then it passes lint, typecheck and its own generated tests at once', () => {
    resource(copy, 'new', 'purchase-orders');
    expect(readdirSync(join(copy, 'src/modules/purchase-orders')).sort()).toEqual([
      'purchase-orders-repository.ts',
      'purchase-orders-routes.ts',
      'purchase-orders-schemas.ts',
    ]);
    expect(readdirSync(join(copy, 'migrations')).some((f) => f.endsWith('_purchase_orders.sql'))).toBe(true);
    const app = readFileSync(join(copy, 'src/app.ts'), 'utf8');
    expect(app).toContain('await v1.register(purchaseOrdersRoutes);');
    expect(readFileSync(join(copy, 'src/scopes.ts'), 'utf8')).toContain("'purchase-orders:write'");
    expect(readFileSync(join(copy, 'docs/behaviour.md'), 'utf8')).toContain('| `/v1/purchase-orders` |');

    run(copy, bin('tsc'), ['--noEmit']);
    run(copy, bin('biome'), ['check', '.']);
    const out = vitest(copy, ['test/purchase-orders.test.ts']);
    expect(out).toMatch(/Tests\s+\S*5 passed/);
  }, 300_000);

  it('when the name is not a plain plural word list or is taken, then it refuses and writes nothing', () => {
    expect(() => resource(copy, 'new', 'Bad_Name')).toThrow(/not a usable resource name/);
    expect(() => resource(copy, 'new', 'api-keys')).toThrow(/not a usable resource name/);
    expect(() => resource(copy, 'new', 'purchase-orders')).toThrow(/exists already/);
  });
});

const example = existsSync(join(ROOT, 'src/modules/items')) ? 'items' : 'fork-probes';
const table = example.replaceAll('-', '_');

describe(`npm run rm:resource -- ${example}`, () => {
  let copy: string;
  beforeAll(() => {
    copy = copyProject();
    if (example !== 'items') resource(copy, 'new', example);
    resource(copy, 'rm', example);
  });
  afterAll(() => rmSync(copy, { recursive: true, force: true }));

  it(`when ${example} is removed, then its module, test, registration, scopes and docs rows are gone and a drop migration is added`, () => {
    expect(existsSync(join(copy, `src/modules/${example}`))).toBe(false);
    expect(existsSync(join(copy, `test/${example}.test.ts`))).toBe(false);
    expect(readFileSync(join(copy, 'src/app.ts'), 'utf8')).not.toContain(example);
    expect(readFileSync(join(copy, 'src/scopes.ts'), 'utf8')).not.toContain(`'${example}:`);
    expect(readFileSync(join(copy, 'docs/behaviour.md'), 'utf8')).not.toContain(`/v1/${example}`);
    const drop = readdirSync(join(copy, 'migrations')).find((f) => f.endsWith(`_drop_${table}.sql`));
    expect(drop).toBeDefined();
    const sql = readFileSync(join(copy, 'migrations', drop as string), 'utf8');
    expect(sql).toMatch(
      new RegExp(
        `-- Up Migration[\\s\\S]*DROP TABLE IF EXISTS ${table};[\\s\\S]*-- Down Migration[\\s\\S]*CREATE TABLE ${table}`,
      ),
    );
    // No test that remains leans on the example resource (this file aside: it is the one removing it).
    const leaning = readdirSync(join(copy, 'test'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && f !== 'fork.test.ts')
      .filter((f) =>
        new RegExp(`/v1/${example}\\b|${example}:(read|write)`).test(
          readFileSync(join(copy, 'test', f), 'utf8'),
        ),
      );
    expect(leaning).toEqual([]);
  });

  it(`when ${example} is removed, then lint, typecheck and the machinery tests pass, the drop migration included`, () => {
    run(copy, bin('tsc'), ['--noEmit']);
    run(copy, bin('biome'), ['check', '.']);
    // The whole remaining suite runs in CI (scripts/check-fork.sh); here, the tests of what items turned on.
    const out = vitest(copy, [
      'test/idempotency.test.ts',
      'test/cache.test.ts',
      'test/auth.test.ts',
      'test/http-edge.test.ts',
      'test/docs.test.ts',
      'test/layers.test.ts',
    ]);
    expect(out).toMatch(/Test Files\s+\S*6 passed/);
  }, 300_000);
});
