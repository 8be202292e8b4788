// System tools the monitoring tests run (promtool, prometheus): found on PATH, or the test says how to get them.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Absolute path of an executable on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Suffix for a describe() title: empty when the tool exists, otherwise why the block is skipped. */
export function skipNote(tool: string, path: string | undefined): string {
  if (path !== undefined) return '';
  const note = `${tool} is not installed: install it with \`apt-get install prometheus\` (Debian/Ubuntu; .ci/run does)`;
  console.warn(`SKIPPED: ${note}`);
  return ` (SKIPPED: ${note})`;
}
