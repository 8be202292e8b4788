// Owns turning a compose.yaml service definition into the podman run flags that run it the same way.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ComposeFile, durationMs, serviceEnv } from '../../deploy/support/compose.ts';
import { ROOT } from './containers.ts';

export interface ComposeRun {
  flags: string[];
  /** The service's command (after the image; its entrypoint, tini, stays). */
  command: string[];
  env: Record<string, string>;
  healthcheck?: { test: string[]; deadlineMs: number };
  stopTimeoutSeconds: number;
}

/** Fields the test applies itself or that have no meaning for one container on the host's network. */
const NOT_APPLIED = new Set(['build', 'restart', 'depends_on', 'ports']);
const APPLIED = new Set([
  'image',
  'command',
  'environment',
  'user',
  'read_only',
  'tmpfs',
  'cap_drop',
  'security_opt',
  'secrets',
  'healthcheck',
  'stop_grace_period',
  'init',
  'mem_limit',
]);

/**
 * podman flags for one service. `env` is added over the service's environment (the host-network
 * overrides); `secretContent` may rewrite a secret file's content. Throws on a field it does not know,
 * so a compose.yaml change cannot silently escape the test.
 */
export function composeRun(
  compose: ComposeFile,
  name: string,
  options: {
    dir: string;
    env: Record<string, string>;
    secretContent: (secret: string, content: string) => string;
  },
): ComposeRun {
  const service = compose.services[name];
  if (!service) throw new Error(`no service ${name}`);
  for (const key of Object.keys(service))
    if (!APPLIED.has(key) && !NOT_APPLIED.has(key))
      throw new Error(`compose ${name}.${key} is not translated to podman`);

  const flags: string[] = [];
  const env = { ...serviceEnv(service), ...options.env };
  for (const [k, v] of Object.entries(env)) flags.push('--env', `${k}=${v}`);
  if (service.user) flags.push('--user', service.user);
  if (service.read_only) flags.push('--read-only');
  for (const t of [service.tmpfs ?? []].flat()) flags.push('--tmpfs', t);
  for (const cap of service.cap_drop ?? []) flags.push('--cap-drop', cap);
  for (const opt of service.security_opt ?? []) flags.push('--security-opt', opt);
  if (service.init) flags.push('--init');
  if (service.mem_limit !== undefined) flags.push('--memory', String(service.mem_limit));

  // File secrets: compose bind-mounts each file read-only at /run/secrets/<target or name>.
  const secretsDir = join(options.dir, `${name}-secrets`);
  mkdirSync(secretsDir, { recursive: true });
  for (const s of service.secrets ?? []) {
    const source = typeof s === 'string' ? s : s.source;
    const target = typeof s === 'string' ? s : (s.target ?? s.source);
    const file = compose.secrets?.[source]?.file;
    if (!file) throw new Error(`secret ${source} is not a file secret`);
    const path = join(secretsDir, source);
    writeFileSync(path, options.secretContent(source, readFileSync(join(ROOT, file), 'utf8').trim()));
    chmodSync(path, 0o444);
    flags.push('--volume', `${path}:/run/secrets/${target}:ro`);
  }
  chmodSync(options.dir, 0o755);
  chmodSync(secretsDir, 0o755);

  let healthcheck: ComposeRun['healthcheck'];
  const hc = service.healthcheck;
  if (hc && !hc.disable) {
    const test = typeof hc.test === 'string' ? ['CMD-SHELL', hc.test] : hc.test;
    const interval = durationMs(hc.interval ?? '30s');
    const startPeriod = durationMs(hc.start_period ?? '0s');
    const retries = hc.retries ?? 3;
    // podman takes exec form as a JSON array of the command alone, shell form as a plain string.
    const [form, ...rest] = test;
    let cmd: string;
    if (form === 'CMD') cmd = JSON.stringify(rest);
    else if (form === 'CMD-SHELL' && rest.length === 1) cmd = rest[0] as string;
    else if (typeof hc.test === 'string') cmd = hc.test;
    else throw new Error(`${name}: healthcheck test ${JSON.stringify(hc.test)} is not translated`);
    flags.push(
      '--health-cmd',
      cmd,
      '--health-interval',
      hc.interval ?? '30s',
      '--health-timeout',
      hc.timeout ?? '30s',
      '--health-retries',
      String(retries),
      '--health-start-period',
      hc.start_period ?? '0s',
    );
    healthcheck = { test, deadlineMs: startPeriod + interval * retries };
  }
  flags.push('--network', 'host');

  const command = service.command === undefined ? [] : [service.command].flat();
  if (typeof service.command === 'string') throw new Error(`${name}: string commands are not split here`);
  return {
    flags,
    command,
    env,
    healthcheck,
    stopTimeoutSeconds: Math.ceil(durationMs(service.stop_grace_period ?? '10s') / 1000),
  };
}
