// Owns a private copy of the service's source for one bench run, and the compile cache its servers share.
//
// The checkout is shared: a colleague edits src/ while the bench runs. Without a copy, servers started
// later in the run would measure different code than the first ones, and a server started mid-save
// could load a half-written file. The copy is what `node src/main.ts` needs: src/, migrations/,
// package.json (version, "type": "module") and a node_modules link.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.ts';
import { REPO_ROOT } from './server-process.ts';

export interface SourceSnapshot {
  /** Run servers and CLIs with this as cwd. */
  root: string;
  /** When the copy was taken. */
  takenAt: string;
  /**
   * NODE_COMPILE_CACHE for every server of the run: private to the run (so no earlier run's cache is
   * measured), warmed by one unmeasured start like the image warms its own at build time.
   */
  compileCacheDir: string;
}

export function snapshotSource(cleanup: Cleanup): SourceSnapshot {
  const root = mkdtempSync(join(os.tmpdir(), `bench-src-${process.pid}-`));
  cleanup.add(`remove ${root}`, () => rmSync(root, { recursive: true, force: true }));
  const takenAt = new Date().toISOString();
  cpSync(join(REPO_ROOT, 'src'), join(root, 'src'), { recursive: true });
  cpSync(join(REPO_ROOT, 'migrations'), join(root, 'migrations'), { recursive: true });
  copyFileSync(join(REPO_ROOT, 'package.json'), join(root, 'package.json'));
  // Bare imports resolve through this link; rmSync removes the link, never what it points to.
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  const compileCacheDir = join(root, '.compile-cache');
  mkdirSync(compileCacheDir);
  return { root, takenAt, compileCacheDir };
}

/** Files in the compile cache (Node writes them when a process exits): 0 means nothing was cached. */
export function compileCacheFiles(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
}
