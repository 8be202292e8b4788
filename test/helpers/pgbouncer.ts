// Starts Debian's pgbouncer on a free loopback port in front of the test Postgres, with its own ini in a temp dir.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_PG_ADMIN_URL } from './env.ts';
import { freePort } from './process.ts';

/** Debian installs it in /usr/sbin, which a non-root PATH often lacks. */
function findPgBouncer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/bin'];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, 'pgbouncer'), constants.X_OK);
      return join(dir, 'pgbouncer');
    } catch {
      // not here
    }
  }
  return undefined;
}

export const PGBOUNCER_BIN = findPgBouncer();
export const PGBOUNCER_MISSING = 'pgbouncer is not installed (Debian: apt-get install pgbouncer)';

export interface PgBouncerOptions {
  /** transaction (default) or session. */
  poolMode?: 'transaction' | 'session';
  /** Server connections per database and user (PgBouncer's default_pool_size); 20 by default. */
  defaultPoolSize?: number;
  /** More [pgbouncer] settings, written as `key = value`. */
  settings?: Record<string, string | number>;
}

export interface PgBouncer {
  port: number;
  /** A URL for a database of the test Postgres, through this PgBouncer (same user as TEST_PG_ADMIN_URL). */
  url(dbName: string): string;
  /** PgBouncer's log so far (for a failing assertion's message). */
  log(): string;
  stop(): Promise<void>;
}

function waitForPort(port: number, child: ChildProcess, readLog: () => string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  return new Promise<void>((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode !== null)
        return reject(new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}): ${readLog()}`));
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`pgbouncer not accepting on ${port}: ${readLog()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * A PgBouncer of its own (never Debian's system one on 6432): trust authentication for the test
 * user, every database forwarded to the test Postgres (`*`), no unix socket, logging into its
 * temp dir. stop() ends it and removes the dir.
 */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  // freePort() releases the port before PgBouncer binds it: another process may take it meanwhile.
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(options, await freePort());
    } catch (err) {
      if (attempt === 3 || !/bind|Address already in use/i.test(String(err))) throw err;
    }
  }
}

async function launch(options: PgBouncerOptions, port: number): Promise<PgBouncer> {
  if (PGBOUNCER_BIN === undefined) throw new Error(PGBOUNCER_MISSING);
  const server = new URL(TEST_PG_ADMIN_URL);
  const user = decodeURIComponent(server.username) || 'postgres';
  const dir = mkdtempSync(join(tmpdir(), 'pgbouncer-'));
  const logFile = join(dir, 'pgbouncer.log');
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'userlist.txt'),
    pool_mode: options.poolMode ?? 'transaction',
    default_pool_size: options.defaultPoolSize ?? 20,
    max_client_conn: 500,
    logfile: logFile,
    admin_users: user,
    ...options.settings,
  };
  const ini = [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || 5432}`,
    '[pgbouncer]',
    ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'pgbouncer.ini'), ini);
  // trust still requires the user to be listed.
  writeFileSync(join(dir, 'userlist.txt'), `"${user}" ""\n`);
  // PgBouncer refuses to run as root: as root, it runs as postgres, which must write its log here.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chmodSync(dir, 0o777);
  const child = spawn(
    PGBOUNCER_BIN,
    ['-q', ...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const readLog = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, readLog);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}${stderr ? `\nstderr: ${stderr}` : ''}`);
  }
  return {
    port,
    url: (dbName) => `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${dbName}`,
    log: readLog,
    stop,
  };
}

/**
 * The service's environment through `bouncer` in transaction mode over a test database: migrations
 * (and the statement_timeout role default they set, which the start-up check requires) over the
 * direct URL on start.
 */
export function transactionPoolEnv(
  bouncer: PgBouncer,
  db: { name: string; url: string },
): Record<string, string> {
  return {
    DATABASE_URL: bouncer.url(db.name),
    MIGRATE_DATABASE_URL: db.url,
    DATABASE_POOL_MODE: 'transaction',
    MIGRATE_ON_START: 'true',
  };
}
