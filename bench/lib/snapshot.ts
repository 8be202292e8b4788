// Owns a private copy of the compiled build for one bench run.
//
// The checkout is shared: a colleague's `npm start` or test run rebuilds dist/ in place whenever src/
// is newer. Without a copy, a server started mid-rebuild can load half-written files, and servers
// started later in the run would measure a different build than the first ones.
import { copyFileSync, cpSync, existsSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.ts';
import { REPO_ROOT } from './server-process.ts';

export interface BuildSnapshot {
  /** Run servers and CLIs with this as cwd: dist/, migrations/, package.json and a node_modules link. */
  root: string;
  /** When dist/server.js was built. */
  builtAt: string;
}

export function snapshotBuild(cleanup: Cleanup): BuildSnapshot {
  const server = join(REPO_ROOT, 'dist/server.js');
  if (!existsSync(server))
    throw new Error('dist/server.js is missing: run `npm run build` (npm run bench does)');
  const root = mkdtempSync(join(os.tmpdir(), `bench-build-${process.pid}-`));
  cleanup.add(`remove ${root}`, () => rmSync(root, { recursive: true, force: true }));
  cpSync(join(REPO_ROOT, 'dist'), join(root, 'dist'), { recursive: true });
  cpSync(join(REPO_ROOT, 'migrations'), join(root, 'migrations'), { recursive: true });
  // dist/ reads ../package.json (version, "type": "module") and ../migrations, like from the checkout.
  copyFileSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
  // Bare imports resolve through this link; rmSync removes the link, never what it points to.
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  return { root, builtAt: statSync(server).mtime.toISOString() };
}
