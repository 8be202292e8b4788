// Owns reading the module graph Node loads from entry files as it runs the TypeScript source: the
// relative modules, the packages, and the files each module reads next to itself.
import { statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { posix } from 'node:path';
import { readText, repoPath } from './repo.ts';

export interface ModuleGraph {
  /** Every module reached through relative imports (static or dynamic), the entries first. */
  modules: string[];
  /** Packages imported by name (node: and other builtins left out). */
  packages: string[];
  /** Paths read next to a module: `new URL('<relative>', import.meta.url)`, resolved. */
  filesRead: string[];
  /** Each module's relative imports, resolved. */
  imports: Record<string, string[]>;
  /** Relative imports that name no file, as `<importer>: <specifier>`. */
  missing: string[];
}

// `import ... from '...'`, `import '...'`, `export ... from '...'` at the start of a line (so not in a
// comment). `import type` / `export type` are erased by type stripping; `import { type A } from 'x'`
// is not (Node keeps `import {} from 'x'`, as verbatimModuleSyntax does), so it counts.
const STATIC = /^[ \t]*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
const READS = /new URL\(\s*'(\.{1,2}\/[^']*)'\s*,\s*import\.meta\.url\s*\)/g;

/** True when the match sits in a `//` or `/* *\/` comment line. */
function inComment(source: string, index: number): boolean {
  const line = source.slice(source.lastIndexOf('\n', index) + 1, index);
  return line.includes('//') || /^\s*(\/\*|\*)/.test(line);
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** The graph from entry files (repository paths), following relative imports through .ts/.js files. */
export function moduleGraph(entries: string[]): ModuleGraph {
  const modules: string[] = [];
  const packages = new Set<string>();
  const filesRead = new Set<string>();
  const missing: string[] = [];
  const imports: Record<string, string[]> = {};
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.shift() as string;
    if (modules.includes(file)) continue;
    modules.push(file);
    if (!/\.(ts|mts|js|mjs)$/.test(file)) continue;
    const source = readText(file);
    const dir = posix.dirname(file);
    imports[file] = [];
    const specifiers = [
      ...[...source.matchAll(STATIC)].map((m) => m[1] as string),
      ...[...source.matchAll(DYNAMIC)].filter((m) => !inComment(source, m.index)).map((m) => m[1] as string),
    ];
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) {
        const target = posix.join(dir, specifier);
        // Node resolves a relative specifier to that exact file: no extension search, no index file.
        if (statSync(repoPath(target), { throwIfNoEntry: false })?.isFile()) {
          queue.push(target);
          imports[file]?.push(target);
        } else missing.push(`${file}: ${specifier}`);
      } else if (!isBuiltin(specifier)) packages.add(packageName(specifier));
    }
    for (const m of source.matchAll(READS))
      if (!inComment(source, m.index)) filesRead.add(posix.join(dir, m[1] as string));
  }
  return { modules, packages: [...packages].sort(), filesRead: [...filesRead].sort(), imports, missing };
}
