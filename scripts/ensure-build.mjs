// Builds dist/ before `npm start` when it is missing or older than any file in src/ or the build scripts.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

const built = 'dist/server.js';
if (!existsSync('src')) process.exit(0); // an installed image ships dist/ only
// The build scripts count as sources too: they decide what dist/server.js and its bundle are.
const sources = Math.max(
  newest('src'),
  ...['scripts/bundle.mjs', 'scripts/server-loader.mjs'].map((f) => statSync(f).mtimeMs),
);
if (!existsSync(built) || statSync(built).mtimeMs < sources) {
  console.error('building dist/ ...');
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    stdio: 'inherit',
  });
  execFileSync(process.execPath, ['scripts/bundle.mjs'], { stdio: 'inherit' });
}
