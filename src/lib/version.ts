// Owns the service version, read once from package.json (one level above both src/ and dist/).
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export const APP_VERSION: string = process.env.APP_VERSION ?? pkg.version;
