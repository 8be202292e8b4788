// The served OpenAPI document, linted from outside: Spectral (its OpenAPI rules and the OWASP API
// Security Top 10 ruleset) and Redocly's recommended rules, with zero errors.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { contractTool, skipNote, TOOLS_DIR } from './tools.ts';

const CONFIG = new URL('../../.ci/openapi-tools/', import.meta.url).pathname;
const spectral = contractTool('spectral');
const redocly = contractTool('redocly');

/** Runs a linter that exits non-zero on findings; its stdout either way. */
function lint(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    });
  } catch (err) {
    const e = err as { stdout?: string; message: string };
    if (e.stdout) return e.stdout;
    throw err;
  }
}

describe.skipIf(!spectral || !redocly)(
  `the served OpenAPI document, linted${skipNote('Spectral/Redocly', spectral && redocly)}`,
  () => {
    let t: TestApp;
    let dir: string;
    let file: string;
    beforeAll(async () => {
      t = await buildTestApp();
      dir = mkdtempSync(join(tmpdir(), 'openapi-lint-'));
      file = join(dir, 'openapi.json');
      writeFileSync(file, JSON.stringify((await request(t.app.server).get('/openapi.json')).body));
    });
    afterAll(async () => {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('when Spectral runs spectral:oas and the OWASP ruleset, then it reports no errors', () => {
      // Spectral resolves the OWASP ruleset package from the ruleset file's folder: the tools folder.
      copyFileSync(join(CONFIG, 'spectral.yaml'), join(TOOLS_DIR, '.spectral.yaml'));
      const out = lint(spectral as string, [
        'lint',
        file,
        '--ruleset',
        join(TOOLS_DIR, '.spectral.yaml'),
        '--format',
        'json',
        '--quiet',
      ]);
      const findings = JSON.parse(out) as {
        code: string;
        severity: number;
        message: string;
        path: string[];
      }[];
      const errors = findings
        .filter((f) => f.severity === 0)
        .map((f) => `${f.code}: ${f.message} at ${f.path.join('.')}`);
      expect(errors).toEqual([]);
    });

    it('when Redocly runs its recommended rules, then it reports no errors', () => {
      const out = lint(redocly as string, [
        'lint',
        file,
        '--config',
        join(CONFIG, 'redocly.yaml'),
        '--format',
        'json',
      ]);
      const report = JSON.parse(out) as {
        problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
      };
      const errors = report.problems
        .filter((p) => p.severity === 'error')
        .map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`);
      expect(errors).toEqual([]);
    });
  },
);
