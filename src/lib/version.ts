// Owns the service version and licence, read once from package.json (one level above src/).
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  license?: string;
};

/** package.json's version; APP_VERSION (config) overrides it where the config is at hand. */
export const PACKAGE_VERSION: string = pkg.version;

/** package.json's licence (an SPDX identifier), for the OpenAPI document's info. */
export const PACKAGE_LICENSE: string | undefined = pkg.license;
