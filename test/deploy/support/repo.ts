// Owns what the deployment tests know about the repository: paths, YAML files, and the service's
// own configuration rules (imported from src/config.ts, never restated).
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import {
  CONFIG_KEYS,
  type Config,
  ConfigError,
  loadConfig,
  PLACEHOLDER_SECRETS,
  SECRET_KEYS,
} from '../../../src/config.ts';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export const repoPath = (...parts: string[]) => join(ROOT, ...parts);
export const readText = (path: string) => readFileSync(repoPath(path), 'utf8');
export const exists = (path: string) => existsSync(repoPath(path));
export const readYaml = <T = unknown>(path: string): T => parse(readText(path)) as T;

export function readYamlDocuments(text: string): Record<string, unknown>[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('\n'));
      return d.toJS() as Record<string, unknown> | null;
    })
    .filter((d): d is Record<string, unknown> => d !== null);
}

/** Every file under a repository folder, as paths relative to the root. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string) => {
    for (const entry of readdirSync(abs)) {
      const path = join(abs, entry);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(ROOT, path).split('\\').join('/'));
    }
  };
  walk(repoPath(dir));
  return out;
}

/** Variables the service reads: the schema's keys plus the <NAME>_FILE form of each secret. */
export const KNOWN_ENV = new Set<string>([...CONFIG_KEYS, ...SECRET_KEYS.map((k) => `${k}_FILE`)]);
export const SECRET_FILE_KEYS = new Set<string>(SECRET_KEYS.map((k) => `${k}_FILE`));

/** A strong value no placeholder check refuses, for proving an environment is otherwise valid. */
export const STRONG_TEST_SECRET = 'test-only-7f3a9c1e5b8d2f4a6c0e9b7d5f3a1c8e';

export const isPlaceholderSecret = (value: string) => PLACEHOLDER_SECRETS.has(value.toLowerCase());

/** loadConfig's problems for an environment, or [] when it is accepted. */
export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

/**
 * Writes each *_FILE secret to a temporary file (as the runtime mounts it) and returns the
 * environment with the *_FILE paths pointing at those files, ready for loadConfig.
 */
export function withSecretFiles(
  env: Record<string, string>,
  secretValue: (fileKey: string, path: string) => string | undefined,
): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'deploy-secrets-'));
  const out = { ...env };
  for (const [key, path] of Object.entries(env)) {
    if (!SECRET_FILE_KEYS.has(key)) continue;
    const value = secretValue(key, path);
    if (value === undefined) throw new Error(`${key}=${path}: no secret provides this file`);
    const file = join(dir, key);
    writeFileSync(file, value);
    out[key] = file;
  }
  return out;
}

export { CONFIG_KEYS, type Config, loadConfig, SECRET_KEYS };
