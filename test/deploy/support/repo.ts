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
  OTEL_SAMPLERS,
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

/**
 * The standard OpenTelemetry variables the deploy files may set. Tracing is configured only the
 * standard way (issue 17): the OpenTelemetry SDK reads these itself, so src/config.ts does not list
 * them. They are named one by one rather than admitting any OTEL_ prefix, so a misspelt key (which
 * the SDK would silently ignore) still fails the checks that use DEPLOY_ENV.
 */
export const OTEL_SDK_ENV = new Set<string>([
  'OTEL_SDK_DISABLED',
  'OTEL_SERVICE_NAME',
  'OTEL_RESOURCE_ATTRIBUTES',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_TRACES_SAMPLER',
  'OTEL_TRACES_SAMPLER_ARG',
]);

/** Every variable a deployed API container may get: src/config.ts's keys and the OpenTelemetry ones. */
export const DEPLOY_ENV = new Set<string>([...KNOWN_ENV, ...OTEL_SDK_ENV]);

const OTEL_SAMPLER_SET = new Set<string>(OTEL_SAMPLERS);

/**
 * What the OpenTelemetry specification would not accept (or would misread) in an environment's
 * OTEL_* values, as readable strings; [] when they are sound or absent.
 */
export function otelProblems(env: Record<string, string>): string[] {
  const problems: string[] = [];
  const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      problems.push(`OTEL_EXPORTER_OTLP_ENDPOINT is not a URL: ${endpoint}`);
    }
    if (url !== undefined) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        problems.push(`OTEL_EXPORTER_OTLP_ENDPOINT is not http(s): ${endpoint}`);
      // The SDK appends /v1/traces to this base URL: a path here would be sent to twice over.
      if (url.pathname !== '/') problems.push(`OTEL_EXPORTER_OTLP_ENDPOINT has a path: ${endpoint}`);
    }
  }
  const sampler = env.OTEL_TRACES_SAMPLER;
  if (sampler !== undefined && !OTEL_SAMPLER_SET.has(sampler))
    problems.push(`OTEL_TRACES_SAMPLER ${sampler} is not a standard sampler`);
  const arg = env.OTEL_TRACES_SAMPLER_ARG;
  if (arg !== undefined) {
    if (!sampler?.endsWith('traceidratio')) problems.push('OTEL_TRACES_SAMPLER_ARG without a ratio sampler');
    const ratio = Number(arg);
    if (arg.trim() === '' || !(ratio >= 0 && ratio <= 1))
      problems.push(`OTEL_TRACES_SAMPLER_ARG ${arg} is not a ratio in [0, 1]`);
  }
  const attributes = env.OTEL_RESOURCE_ATTRIBUTES;
  if (attributes !== undefined)
    for (const pair of attributes.split(','))
      if (!/^[A-Za-z0-9._-]+=[^=,]+$/.test(pair.trim()))
        problems.push(`OTEL_RESOURCE_ATTRIBUTES entry ${pair} is not key=value`);
  const disabled = env.OTEL_SDK_DISABLED;
  if (disabled !== undefined && !/^(true|false)$/i.test(disabled))
    problems.push(`OTEL_SDK_DISABLED ${disabled} is not true or false`);
  return problems;
}

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
