import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const IMPORT = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;

/** Every relative import of every .ts file under `dir`, as repository paths (src/...). */
function importsUnder(dir: string): { file: string; target: string }[] {
  const found: { file: string; target: string }[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
    if (!entry.endsWith('.ts')) continue;
    const file = join(dir, entry);
    for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(IMPORT)) {
      const spec = (m[1] ?? m[2]) as string;
      if (spec.startsWith('.'))
        found.push({ file, target: relative(ROOT, resolve(ROOT, dirname(file), spec)) });
    }
  }
  return found;
}

// Layers go one way: lib <- plugins <- modules. A plugin that reaches into a feature module cannot be
// reused without it, and deleting the module breaks the plugin.
describe('layers', () => {
  it('when plugins and lib are read, then none imports from src/modules/', () => {
    const imports = [...importsUnder('src/plugins'), ...importsUnder('src/lib')];
    expect(imports.map((i) => i.file)).toContain(join('src', 'plugins', 'auth', 'jwt.ts'));
    expect(imports.filter((i) => i.target.startsWith(join('src', 'modules')))).toEqual([]);
  });

  it('when lib is read, then it imports no plugin', () => {
    const imports = importsUnder('src/lib');
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((i) => i.target.startsWith(join('src', 'plugins')))).toEqual([]);
  });
});
