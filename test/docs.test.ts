import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, loadConfig, SECRET_KEYS } from '../src/config.ts';

const envExample = readFileSync('.env.example', 'utf8');
const readme = readFileSync('README.md', 'utf8');
const configurationDoc = readFileSync('docs/configuration.md', 'utf8');

describe('documentation stays true to the code', () => {
  it('when a config key exists, then .env.example documents it', () => {
    const missing = CONFIG_KEYS.filter((k) => !new RegExp(`^#? ?${k}=`, 'm').test(envExample));
    expect(missing).toEqual([]);
  });

  it('when .env.example names a variable, then the config knows it', () => {
    const named = [...envExample.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1] as string);
    const known = new Set([...CONFIG_KEYS, ...SECRET_KEYS.map((k) => `${k}_FILE`)]);
    expect(named.filter((k) => !known.has(k))).toEqual([]);
  });

  it('when a config key exists, then the configuration reference (docs/configuration.md) lists it', () => {
    expect(CONFIG_KEYS.filter((k) => !configurationDoc.includes(`\`${k}\``))).toEqual([]);
  });

  it('when the README is read, then it stays a front door (under 8 KB; reference lives in docs/)', () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(8 * 1024);
  });

  it('when the README or docs/ link a file of the repository, then the file exists', () => {
    const pages = ['README.md', 'bench/README.md', ...readdirSync('docs').map((f) => join('docs', f))];
    const broken = pages.flatMap((page) =>
      [...readFileSync(page, 'utf8').matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
        .map((m) => m[1] as string)
        .filter((target) => !/^[a-z]+:/.test(target))
        .filter((target) => !existsSync(join(dirname(page), target)))
        .map((target) => `${page} -> ${target}`),
    );
    expect(broken).toEqual([]);
  });

  it('when .env.example is loaded as is, then it is a valid development configuration', () => {
    const env = Object.fromEntries(
      [...envExample.matchAll(/^([A-Z][A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1] as string, m[2] as string]),
    );
    expect(() => loadConfig(env)).not.toThrow();
  });

  it('when the README gives the test command, then it is the one .ci/run calls', () => {
    expect(readme).toContain('npm test');
    expect(readFileSync('.ci/run', 'utf8')).toMatch(/^npm test$/m);
  });
});
