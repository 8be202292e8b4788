// Owns the process configuration: one zod schema over the environment, *_FILE secrets, production guardrails.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';

/** Variables that hold secrets: each may instead be given as <NAME>_FILE (docker and Kubernetes secrets). */
export const SECRET_KEYS = [
  'DATABASE_URL',
  'MIGRATE_DATABASE_URL',
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'JWT_SECRET',
  'JWT_VERIFY_SECRETS',
] as const;

/** Outside production an unset JWT_SECRET falls back to this (also the .env.example value); production refuses it. */
export const DEVELOPMENT_JWT_SECRET = 'development-only-secret-change-me-0123456789';

/** Values that must never be used as a production secret. */
export const PLACEHOLDER_SECRETS = new Set([
  'changeme',
  'change-me',
  'secret',
  'password',
  DEVELOPMENT_JWT_SECRET,
]);

/** Opt-ins that production requires before an unsafe-by-default feature may be switched on. */
const PRODUCTION_OPT_INS = ['docs', 'pretty-logs'] as const;

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0),
);

/** Seconds, given as a number of seconds or with a unit: 900, 90s, 15m, 1h, 1d. */
const duration = z.string().transform((v, ctx) => {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(v.trim());
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m?.[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  const seconds = m ? Number(m[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > 86_400) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration between 1s and 1d, e.g. 900, 15m, 1h' });
    return z.NEVER;
  }
  return seconds;
});

/**
 * TRUST_PROXY: "false" (default), "true" (trust every hop: unsafe in production), a hop count,
 * or a comma-separated list of addresses/CIDRs of the proxies in front of the service.
 */
const trustProxy = z.string().transform((v, ctx): boolean | number | string[] => {
  const s = v.trim();
  if (s === '' || s === 'false') return false;
  if (s === 'true') return true;
  if (/^\d+$/.test(s)) return Number(s);
  const parts = s.split(',').map((p) => p.trim());
  if (
    parts.some((p) => !/^[0-9A-Fa-f.:/]+$/.test(p) && !['loopback', 'linklocal', 'uniquelocal'].includes(p))
  ) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be true, false, a hop count or a list of addresses/CIDRs',
    });
    return z.NEVER;
  }
  return parts;
});

/** The samplers the OpenTelemetry specification defines for OTEL_TRACES_SAMPLER. */
export const OTEL_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;

const EnvSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  /** Reported by /health and app_build_info; the image sets it at build time. Defaults to package.json. */
  APP_VERSION: z.string().min(1).max(100).optional(),
  SERVICE_NAME: z
    .string()
    .regex(/^[a-z0-9-]{1,63}$/)
    .default('api'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(0, 65535).default(3000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.optional(),
  ALLOW_IN_PRODUCTION: list.pipe(z.array(z.enum(PRODUCTION_OPT_INS))).default([]),

  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  /** Where migrations run (they hold a session advisory lock): a direct URL, not a transaction pooler. */
  MIGRATE_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  /** transaction: DATABASE_URL is a PgBouncer in pool_mode = transaction (no session state, no startup parameters). */
  DATABASE_POOL_MODE: z.enum(['session', 'transaction']).default('session'),
  DATABASE_POOL_MAX: int(1, 1000).default(10),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 60_000).default(2000),
  DATABASE_STATEMENT_TIMEOUT_MS: int(0, 3_600_000).default(5000),
  DATABASE_IDLE_TIMEOUT_MS: int(0, 3_600_000).default(30_000),
  DATABASE_SSL: z.enum(['disable', 'require', 'verify-full']).default('disable'),
  DATABASE_SSL_CA_FILE: z.string().min(1).optional(),
  EMBEDDED_DB_DIR: z.string().min(1).default('.data/pglite'),
  EMBEDDED_DB_PORT: int(0, 65535).default(54329),
  MIGRATE_ON_START: bool.optional(),

  REDIS_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  /** Redis Cluster seed nodes instead of REDIS_URL: host:port or redis[s]://[user:password@]host:port, comma-separated. */
  REDIS_CLUSTER_NODES: z
    .string()
    .superRefine((v, ctx) => {
      const parsed = parseClusterNodes(v);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
    })
    .optional(),
  REDIS_KEY_PREFIX: z.string().max(64).default('api:'),
  REDIS_CONNECT_TIMEOUT_MS: int(100, 60_000).default(1000),
  REDIS_COMMAND_TIMEOUT_MS: int(10, 60_000).default(500),

  JWT_SECRET: z.string().min(1).optional(),
  /** HS256: more secrets that verify but never sign (rotation); comma- or newline-separated. */
  JWT_VERIFY_SECRETS: z
    .string()
    .transform((v) =>
      v
        .split(/[,\n]/)
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    )
    .default([]),
  JWT_ALGORITHM: z.enum(['HS256', 'RS256', 'ES256']).default('HS256'),
  JWT_PRIVATE_KEY_FILE: z.string().min(1).optional(),
  JWT_PUBLIC_KEY_FILES: list.default([]),
  JWT_ISSUER: z.string().min(1).max(200).default('api-service'),
  JWT_AUDIENCE: z.string().min(1).max(200).default('api'),
  JWT_EXPIRES_IN: duration.default(900),
  JWT_CLOCK_TOLERANCE_S: int(0, 300).default(5),
  JWT_MAX_TOKEN_BYTES: int(256, 16_384).default(4096),
  API_KEY_PREFIX: z
    .string()
    .regex(/^[a-z][a-z0-9]{1,15}$/, 'must be 2-16 lowercase letters or digits, starting with a letter')
    .default('sk'),
  API_KEY_CACHE_TTL_MS: int(0, 5000).default(5000),
  AUTH_FAILURE_AUDIT_THRESHOLD: int(1, 100_000).default(10),

  RATE_LIMIT_ENABLED: bool.default(true),
  RATE_LIMIT_MAX_REQUESTS: int(1, 1_000_000).default(100),
  RATE_LIMIT_WINDOW_MS: int(1, 86_400_000).default(60_000),
  RATE_LIMIT_BURST: int(1, 1_000_000).optional(),
  RATE_LIMIT_MEMORY_MAX_KEYS: int(100, 10_000_000).default(100_000),

  CACHE_DEFAULT_TTL: int(1, 86_400).default(300),
  CACHE_MAX_ITEMS: int(1, 10_000_000).default(1000),
  CACHE_MAX_BYTES: int(1024, 4 * 1024 * 1024 * 1024).default(50 * 1024 * 1024),

  CORS_ORIGINS: list.default([]),
  TRUST_PROXY: trustProxy.default(false),
  BODY_LIMIT: int(1024, 100 * 1024 * 1024).default(1024 * 1024),
  REQUEST_TIMEOUT_MS: int(0, 600_000).default(30_000),
  KEEP_ALIVE_TIMEOUT_MS: int(1000, 600_000).default(72_000),
  METRICS_PORT: int(1, 65535).optional(),
  DOCS_ENABLED: bool.optional(),
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: int(0, 60_000).default(1000),
  PRESSURE_MAX_HEAP_USED_BYTES: int(0, Number.MAX_SAFE_INTEGER).default(0),
  PRESSURE_RETRY_AFTER_S: int(1, 3600).default(5),

  SHUTDOWN_DELAY_MS: int(0, 600_000).optional(),
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(10_000),

  // OpenTelemetry, named as the specification names them. src/tracing.ts and the SDK read them from
  // the environment before this schema runs (tracing starts before the app's modules load); they are
  // declared here so that a typo stops the start (exit 78) instead of silently tracing nothing.
  OTEL_SDK_DISABLED: bool.optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'none']).optional(),
  OTEL_TRACES_SAMPLER: z.enum(OTEL_SAMPLERS).optional(),
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
  OTEL_SERVICE_NAME: z.string().min(1).max(200).optional(),
  OTEL_RESOURCE_ATTRIBUTES: z.string().max(4096).optional(),
  OTEL_BSP_SCHEDULE_DELAY: int(1, 600_000).optional(),
  OTEL_BSP_EXPORT_TIMEOUT: int(1, 600_000).optional(),
  OTEL_BSP_MAX_QUEUE_SIZE: int(1, 1_000_000).optional(),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: int(1, 1_000_000).optional(),
});

type Env = z.infer<typeof EnvSchema>;

/** Every variable the service reads (not counting the <NAME>_FILE forms of SECRET_KEYS). */
export const CONFIG_KEYS: readonly string[] = Object.keys(EnvSchema.shape);

/** The effective configuration: environment-dependent defaults resolved, nothing optional left ambiguous. */
export type Config = Omit<Env, 'LOG_PRETTY' | 'MIGRATE_ON_START' | 'DOCS_ENABLED' | 'SHUTDOWN_DELAY_MS'> & {
  LOG_PRETTY: boolean;
  MIGRATE_ON_START: boolean;
  DOCS_ENABLED: boolean;
  SHUTDOWN_DELAY_MS: number;
  isProduction: boolean;
};

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Source = Record<string, string | undefined>;

/**
 * Loads ./.env when present with Node's own loader; variables already set win. Never in production,
 * where configuration comes from the environment the platform sets, not from a stray file.
 */
export function loadDotEnv(path = '.env'): void {
  if (process.env.NODE_ENV !== 'production' && existsSync(path)) process.loadEnvFile(path);
}

/** Reads <NAME>_FILE for every secret; setting both forms, or an unreadable file, is a problem. */
function resolveSecretFiles(env: Source, problems: string[]): Source {
  const out: Source = { ...env };
  for (const key of SECRET_KEYS) {
    const file = env[`${key}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[key] !== undefined && env[key] !== '') {
      problems.push(`${key} and ${key}_FILE are both set: use one`);
      continue;
    }
    try {
      out[key] = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      problems.push(`${key}_FILE: cannot read ${file}`);
    }
  }
  return out;
}

const TRUE_VALUES = new Set(['true', '1', 'yes']);
const splitList = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim());

export interface LoadOptions {
  /** For tools that never sign or verify tokens (migrations): the JWT guardrails do not apply. */
  withoutJwt?: boolean;
}

/** Checked on the raw values, so they are reported even when other variables fail to parse. */
function productionProblems(input: Source, options: LoadOptions): string[] {
  const problems: string[] = [];
  const secret = input.JWT_SECRET;
  const optIns = splitList(input.ALLOW_IN_PRODUCTION);
  // RS256/ES256 sign with key files: a shared secret is then neither needed nor checked.
  const symmetric = (input.JWT_ALGORITHM ?? 'HS256') === 'HS256';
  if (options.withoutJwt || !symmetric) {
    // nothing to check
  } else if (secret === undefined) problems.push('JWT_SECRET is required in production');
  else if (PLACEHOLDER_SECRETS.has(secret.toLowerCase()))
    problems.push('JWT_SECRET is a known placeholder value');
  else if (Buffer.byteLength(secret) < 32) problems.push('JWT_SECRET must be at least 32 bytes');
  if (!options.withoutJwt && symmetric) {
    const verifyOnly = (input.JWT_VERIFY_SECRETS ?? '')
      .split(/[,\n]/)
      .map((v) => v.trim())
      .filter(Boolean);
    if (verifyOnly.some((v) => PLACEHOLDER_SECRETS.has(v.toLowerCase()) || Buffer.byteLength(v) < 32))
      problems.push('JWT_VERIFY_SECRETS: every secret must be at least 32 bytes and not a placeholder');
  }
  if (splitList(input.CORS_ORIGINS).includes('*'))
    problems.push('CORS_ORIGINS must list origins explicitly, not *');
  if (input.DATABASE_URL === undefined)
    problems.push('DATABASE_URL is required in production (no embedded database)');
  if (input.TRUST_PROXY?.trim() === 'true')
    problems.push(
      'TRUST_PROXY=true trusts any client-supplied X-Forwarded-For: give a hop count or proxy addresses',
    );
  if (TRUE_VALUES.has(input.DOCS_ENABLED ?? '') && !optIns.includes('docs'))
    problems.push('DOCS_ENABLED=true in production requires ALLOW_IN_PRODUCTION to include docs');
  if (TRUE_VALUES.has(input.LOG_PRETTY ?? '') && !optIns.includes('pretty-logs'))
    problems.push('LOG_PRETTY=true in production requires ALLOW_IN_PRODUCTION to include pretty-logs');
  return problems;
}

/**
 * Parses the environment once. Throws ConfigError listing every problem at once; messages name
 * variables and never echo a value.
 */
export function loadConfig(env: Source = process.env, options: LoadOptions = {}): Config {
  const problems: string[] = [];
  const resolved = resolveSecretFiles(env, problems);
  // Empty strings mean "unset", as in most .env conventions.
  const input: Source = {};
  for (const key of Object.keys(EnvSchema.shape)) {
    const value = resolved[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = EnvSchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      // zod messages for enums list the allowed values, never the received one.
      problems.push(`${name}: ${issue.message}`);
    }
  }
  if (input.NODE_ENV === 'production') problems.push(...productionProblems(input, options));
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);

  const e = parsed.data;
  const isProduction = e.NODE_ENV === 'production';
  const config: Config = {
    ...e,
    isProduction,
    LOG_PRETTY: e.LOG_PRETTY ?? e.NODE_ENV === 'development',
    MIGRATE_ON_START: e.MIGRATE_ON_START ?? !isProduction,
    DOCS_ENABLED: e.DOCS_ENABLED ?? !isProduction,
    SHUTDOWN_DELAY_MS: e.SHUTDOWN_DELAY_MS ?? (isProduction ? 5000 : 0),
  };
  if (config.JWT_ALGORITHM === 'HS256') {
    if (!isProduction) config.JWT_SECRET ??= DEVELOPMENT_JWT_SECRET;
  } else if (
    !options.withoutJwt &&
    config.JWT_PUBLIC_KEY_FILES.length === 0 &&
    config.JWT_PRIVATE_KEY_FILE === undefined
  ) {
    problems.push(
      `JWT_PUBLIC_KEY_FILES or JWT_PRIVATE_KEY_FILE is required with JWT_ALGORITHM=${config.JWT_ALGORITHM}`,
    );
  }
  for (const file of [config.JWT_PRIVATE_KEY_FILE, ...config.JWT_PUBLIC_KEY_FILES])
    if (file !== undefined && !existsSync(file)) problems.push(`JWT key file not found: ${file}`);
  if (config.DATABASE_POOL_MODE === 'transaction') {
    if (config.DATABASE_URL === undefined)
      problems.push(
        'DATABASE_POOL_MODE=transaction requires DATABASE_URL (the embedded database has no pooler)',
      );
    else if (config.MIGRATE_ON_START && config.MIGRATE_DATABASE_URL === undefined)
      problems.push(
        'DATABASE_POOL_MODE=transaction with MIGRATE_ON_START requires MIGRATE_DATABASE_URL (a direct URL: migrations hold a session lock)',
      );
  }
  if (config.MIGRATE_DATABASE_URL !== undefined && config.DATABASE_URL === undefined)
    problems.push('MIGRATE_DATABASE_URL requires DATABASE_URL');
  if (
    config.DATABASE_SSL === 'verify-full' &&
    config.DATABASE_SSL_CA_FILE &&
    !existsSync(config.DATABASE_SSL_CA_FILE)
  )
    problems.push('DATABASE_SSL_CA_FILE: file not found');
  if (config.REDIS_CLUSTER_NODES !== undefined) {
    if (config.REDIS_URL !== undefined) problems.push('REDIS_URL and REDIS_CLUSTER_NODES: set one, not both');
    // A hash tag in the prefix would put every key in one slot: a cluster of one busy shard.
    if (/[{}]/.test(config.REDIS_KEY_PREFIX))
      problems.push('REDIS_KEY_PREFIX must not contain { or } with REDIS_CLUSTER_NODES');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

export interface ClusterNodes {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls: boolean;
}

/**
 * REDIS_CLUSTER_NODES: seed nodes as host:port, or as redis[s]:// URLs carrying the password and
 * TLS as REDIS_URL does; those must be the same on every URL entry. Returns a message when invalid.
 */
export function parseClusterNodes(value: string): ClusterNodes | string {
  const entries = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) return 'must list at least one host:port';
  const nodes: ClusterNodes['nodes'] = [];
  const auth = new Set<string>();
  let result: ClusterNodes = { nodes, tls: false };
  for (const entry of entries) {
    let url: URL;
    try {
      url = new URL(/^rediss?:\/\//.test(entry) ? entry : `redis://${entry}`);
    } catch {
      return 'each entry must be host:port or a redis:// or rediss:// URL';
    }
    const port = Number(url.port);
    if (!url.hostname || !Number.isInteger(port) || port < 1 || (url.pathname !== '' && url.pathname !== '/'))
      return 'each entry must be host:port or a redis:// or rediss:// URL with a port (no database number)';
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
    if (entry.includes('://')) {
      const username = decodeURIComponent(url.username);
      const password = decodeURIComponent(url.password);
      const tls = url.protocol === 'rediss:';
      auth.add(JSON.stringify([username, password, tls]));
      result = {
        nodes,
        tls,
        ...(username ? { username } : {}),
        ...(password ? { password } : {}),
      };
    }
  }
  if (auth.size > 1) return 'every URL entry must carry the same credentials and scheme';
  return result;
}

const SECRET_NAME = /SECRET|PASSWORD|TOKEN|KEY$/;

/** Masks secrets and credentials inside URLs, for the startup log line. */
export function maskConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    if (SECRET_NAME.test(key) && key !== 'REDIS_KEY_PREFIX') out[key] = '[redacted]';
    else if (key === 'REDIS_CLUSTER_NODES' && typeof value === 'string')
      out[key] = value
        .split(',')
        .map((entry) => (entry.includes('://') ? maskUrl(entry.trim()) : entry.trim()))
        .join(',');
    else if (typeof value === 'string' && /^[a-z]+:\/\//i.test(value)) out[key] = maskUrl(value);
    else out[key] = value;
  }
  return out;
}

export function maskUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[invalid url]';
  }
}
