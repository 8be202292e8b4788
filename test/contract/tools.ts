// The OpenAPI contract tools (Spectral, Redocly, openapi-typescript, openapi-fetch): installed outside
// the project by `npm run openapi:tools` (scripts/openapi-tools.sh; .ci/run does it), found here.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const TOOLS_DIR =
  process.env.OPENAPI_TOOLS_DIR ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'api-service-template/openapi-tools');

/** An executable of the tools folder, or undefined when the tools are not installed. */
export function contractTool(name: string): string | undefined {
  const path = join(TOOLS_DIR, 'node_modules/.bin', name);
  return existsSync(path) ? path : undefined;
}

/** Suffix for a describe() title: empty when the tool exists, otherwise why the block is skipped. */
export function skipNote(tool: string, path: string | undefined): string {
  if (path !== undefined) return '';
  const note = `${tool} is not installed: install it with \`npm run openapi:tools\` (.ci/run does)`;
  console.warn(`SKIPPED: ${note}`);
  return ` (SKIPPED: ${note})`;
}
