// Owns the baseline build (`--baseline <git-ref>`): that ref checked out in a temporary git worktree,
// installed and built with the system's Node (20), so its server runs beside this tree's in one bench.
//
// The ref is expected to be a build of the Node 20 era: `npm ci && npm run build` makes dist/server.js.
// npm runs with the baseline's Node first on PATH (this tree's node_modules/.bin, which `npm run bench`
// puts first, is left out), so its dependencies resolve and its code cache is made for that Node.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { Cleanup } from './cleanup.ts';
import { REPO_ROOT } from './server-process.ts';

export interface BaselineBuild {
  ref: string;
  /** The ref resolved, abbreviated. */
  commit: string;
  /** The worktree: servers run `node dist/server.js` with this as cwd. */
  root: string;
  /** The Node.js binary that built it and runs it, and its version. */
  node: string;
  nodeVersion: string;
  /** Worktree + install + build. */
  prepareSeconds: number;
}

const INSTALL_TIMEOUT_MS = 10 * 60_000;
const BUILD_TIMEOUT_MS = 5 * 60_000;

/** The environment npm and the baseline's node run in: its Node first, nothing of this tree's npm run. */
export function baselineEnv(node: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(base))
    if (!/^npm_/i.test(key) && key !== 'NODE_OPTIONS' && key !== 'NODE_COMPILE_CACHE') env[key] = value;
  const path = (base.PATH ?? '').split(delimiter).filter((p) => p !== '' && !p.includes('node_modules'));
  env.PATH = [dirname(node), ...path].join(delimiter);
  return env;
}

function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<string>((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 2 ** 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const tail = `${stdout}\n${stderr}`.trim().split('\n').slice(-30).join('\n');
          reject(new Error(`${file} ${args.join(' ')} (in ${cwd}) failed: ${err.message}\n${tail}`));
        } else resolve(stdout.trim());
      },
    );
  });
}

export async function prepareBaseline(
  ref: string,
  node: string,
  cleanup: Cleanup,
  log: (message: string) => void,
): Promise<BaselineBuild> {
  const t0 = performance.now();
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let commit: string;
  try {
    commit = git('rev-parse', '--short', '--verify', `${ref}^{commit}`);
  } catch {
    throw new Error(`--baseline ${ref}: not a commit of this repository`);
  }
  const env = baselineEnv(node);
  const nodeVersion = await run(node, ['--version'], REPO_ROOT, env, 10_000);
  const npm = join(dirname(node), 'npm');
  if (!existsSync(npm)) throw new Error(`--baseline: no npm next to ${node}`);

  const parent = mkdtempSync(join(os.tmpdir(), `bench-baseline-${process.pid}-`));
  const root = join(parent, 'tree');
  cleanup.add(`remove the baseline worktree ${root}`, () => {
    try {
      git('worktree', 'remove', '--force', root);
    } catch {
      // not registered (add failed) or already gone: the folder and a prune are enough
    }
    rmSync(parent, { recursive: true, force: true });
    git('worktree', 'prune');
  });
  log(`\nbaseline: ${ref} (${commit}) into ${root}, built with ${node} ${nodeVersion}`);
  git('worktree', 'add', '--detach', root, commit);

  const t1 = performance.now();
  await run(npm, ['ci', '--prefer-offline', '--no-audit', '--no-fund'], root, env, INSTALL_TIMEOUT_MS);
  log(`  npm ci: ${((performance.now() - t1) / 1000).toFixed(0)} s`);
  const t2 = performance.now();
  await run(npm, ['run', 'build'], root, env, BUILD_TIMEOUT_MS);
  log(`  npm run build: ${((performance.now() - t2) / 1000).toFixed(0)} s`);
  if (!existsSync(join(root, 'dist/server.js')))
    throw new Error(`--baseline ${ref}: npm run build made no dist/server.js`);
  return { ref, commit, root, node, nodeVersion, prepareSeconds: (performance.now() - t0) / 1000 };
}
