// The compose stack through PgBouncer: compose.yaml's pgbouncer profile merged with docker/compose.pgbouncer.yaml,
// checked against the Compose specification, src/config.ts and docker/pgbouncer/pgbouncer.ini.
import { describe, expect, it } from 'vitest';
import { roleStatementTimeout } from '../../src/lib/migrations.ts';
import {
  type ComposeFile,
  type ComposeService,
  composeSchemaValidator,
  dependsOn,
  envWithSecrets,
  parseCompose,
  publishedPorts,
  serviceEnv,
} from './support/compose.ts';
import { DEPLOY_ENV, loadConfig, readText } from './support/repo.ts';

const OVERRIDE = 'docker/compose.pgbouncer.yaml';
const base = parseCompose(readText('compose.yaml'), {});
const override = parseCompose(readText(OVERRIDE), {});

/** Compose's merge for what the override uses: maps merge by key, secrets by source, scalars replace. */
function merge(a: ComposeFile, b: ComposeFile): ComposeFile {
  const out = structuredClone(a);
  for (const [name, s] of Object.entries(b.services)) {
    out.services[name] ??= {};
    const into = out.services[name] as ComposeService;
    if (s.environment) into.environment = { ...serviceEnv(into), ...serviceEnv(s) };
    if (s.depends_on)
      into.depends_on = Object.fromEntries(
        Object.entries({ ...dependsOn(into), ...dependsOn(s) }).map(([k, condition]) => [k, { condition }]),
      );
    if (s.secrets) {
      const sources = new Set((into.secrets ?? []).map((x) => (typeof x === 'string' ? x : x.source)));
      into.secrets = [
        ...(into.secrets ?? []),
        ...s.secrets.filter((x) => !sources.has(typeof x === 'string' ? x : x.source)),
      ];
    }
  }
  out.secrets = { ...a.secrets, ...b.secrets };
  return out;
}

const merged = merge(base.compose, override.compose);
const service = (name: string) => merged.services[name] as ComposeService;

/** The [section] key = value pairs of docker/pgbouncer/pgbouncer.ini. */
function ini(): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = '';
  for (const raw of readText('docker/pgbouncer/pgbouncer.ini').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1] as string;
    else {
      const [key, ...value] = line.split('=');
      out[section] ??= {};
      (out[section] as Record<string, string>)[(key as string).trim()] = value.join('=').trim();
    }
  }
  return out;
}

describe('compose through PgBouncer (compose.yaml --profile pgbouncer + docker/compose.pgbouncer.yaml)', () => {
  it('when merged, then the stack conforms to the Compose specification, and without the override nothing routes through PgBouncer', () => {
    const validate = composeSchemaValidator();
    for (const [what, file] of [
      [OVERRIDE, override.compose],
      ['merged', merged],
    ] as const)
      expect(validate(file) ? [] : validate.errors, what).toEqual([]);
    expect(override.unset).toEqual([]);
    expect((base.compose.services.pgbouncer as { profiles?: string[] }).profiles).toEqual(['pgbouncer']);
    expect(dependsOn(base.compose.services.api as ComposeService)).not.toHaveProperty('pgbouncer');
    expect(dependsOn(service('api')).pgbouncer).toBe('service_healthy');
    expect(dependsOn(service('pgbouncer'))).toEqual({ postgres: 'service_healthy' });
  });

  it('when the api and migrate configurations load, then the api pools through PgBouncer by transaction and migrate migrates directly, setting the api role default', () => {
    const settings = ini();
    for (const name of ['api', 'migrate']) {
      for (const key of Object.keys(serviceEnv(service(name))))
        expect(DEPLOY_ENV.has(key), `${name}: ${key}`).toBe(true);
    }
    const api = loadConfig(envWithSecrets(merged, service('api')));
    const migrate = loadConfig(envWithSecrets(merged, service('migrate')));
    const pooled = new URL(api.DATABASE_URL as string);
    expect(api.DATABASE_POOL_MODE).toBe('transaction');
    expect(pooled.hostname).toBe('pgbouncer');
    expect(pooled.port).toBe(settings.pgbouncer?.listen_port);
    expect(settings.pgbouncer?.pool_mode).toBe('transaction');
    // The api's database is one PgBouncer serves, on the postgres service.
    const target = settings.databases?.[pooled.pathname.slice(1)];
    expect(target).toBe('host=postgres port=5432 dbname=api');

    expect(migrate.DATABASE_POOL_MODE).toBe('transaction');
    expect(migrate.DATABASE_URL).toBe(api.DATABASE_URL);
    const direct = new URL(migrate.MIGRATE_DATABASE_URL as string);
    expect(`${direct.hostname}:${direct.port}${direct.pathname}`).toBe('postgres:5432/api');
    // The same role both ways: migrate sets the default for the role PgBouncer logs in as.
    expect(direct.username).toBe(pooled.username);
    expect(decodeURIComponent(pooled.password)).toBe(decodeURIComponent(direct.password));
    expect(roleStatementTimeout(migrate, migrate.DATABASE_URL as string)).toEqual({
      role: pooled.username,
      ms: api.DATABASE_STATEMENT_TIMEOUT_MS,
    });
  });

  it('when PgBouncer starts, then its auth file names the api role, its healthcheck and published port are its listen port', () => {
    const pgb = service('pgbouncer');
    const port = Number(ini().pgbouncer?.listen_port);
    expect(publishedPorts(pgb).map((p) => [p.hostIp, p.target])).toEqual([['127.0.0.1', port]]);
    const test = pgb.healthcheck?.test as string[];
    expect(test[test.indexOf('-p') + 1]).toBe(String(port));
    const user = new URL(loadConfig(envWithSecrets(merged, service('api'))).DATABASE_URL as string).username;
    expect([pgb.entrypoint].flat().join(' ')).toContain(`'"${user}" "%s`);
    expect(JSON.stringify(pgb.entrypoint)).toContain('/run/secrets/postgres_password');
    expect(ini().pgbouncer?.auth_file).toBe('/tmp/userlist.txt');
    expect(pgb.tmpfs).toEqual(['/tmp']);
  });
});
