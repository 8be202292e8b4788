// Owns the set of servers a bench run needs: the service in its variants and the control, started on demand.
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { ControlRoute } from '../control-server.ts';
import { type BaselineBuild, baselineEnv } from './baseline.ts';
import type { Cleanup } from './cleanup.ts';
import type { BenchEnv, ServerEnvOptions } from './environment.ts';
import type { ServerKind } from './results.ts';
import { freePort, REPO_ROOT, ServerProcess } from './server-process.ts';

/** The image's NODE_OPTIONS (docker/Dockerfile): this tree's service runs under production's V8 flags. */
export const IMAGE_NODE_OPTIONS = (
  /NODE_OPTIONS=("[^"]*"|\S+)/.exec(readFileSync(join(REPO_ROOT, 'docker/Dockerfile'), 'utf8'))?.[1] ?? ''
).replace(/^"|"$/g, '');

/** How each variant of the service differs; all share the database, each has its own Redis prefix. */
export const SERVICE_VARIANTS: Record<Exclude<ServerKind, 'control'>, Omit<ServerEnvOptions, 'port'>> = {
  service: { name: 'svc' },
  // Without REDIS_URL the limiter (and the cache, whose hits come from its memory tier anyway) stay in process.
  memory: { name: 'mem', redis: false },
  nolimit: { name: 'off', extra: { RATE_LIMIT_ENABLED: 'false' } },
  // The configuration's defaults (100 per minute): 429s expected.
  limited: { name: 'rl', extra: { RATE_LIMIT_MAX_REQUESTS: '100', RATE_LIMIT_WINDOW_MS: '60000' } },
  // The --baseline build (its own Node, its own worktree), configured like `service`.
  baseline: { name: 'base' },
};

export function logPathFor(name: string): string {
  return join(os.tmpdir(), `bench-${process.pid}-${name}.log`);
}

export class Servers {
  private readonly running = new Map<ServerKind, ServerProcess>();
  private controlRoutes: ControlRoute[] | undefined;

  private readonly env: BenchEnv;
  private readonly cleanup: Cleanup;
  private readonly baseline: BaselineBuild | undefined;
  private readonly nodeOptions: string;
  private readonly serviceEnv: Record<string, string>;

  /** `nodeOptions`: NODE_OPTIONS for this tree's service (the image's by default); `serviceEnv`: more variables for it. */
  constructor(
    env: BenchEnv,
    cleanup: Cleanup,
    baseline?: BaselineBuild,
    nodeOptions = IMAGE_NODE_OPTIONS,
    serviceEnv: Record<string, string> = {},
  ) {
    this.serviceEnv = serviceEnv;
    this.env = env;
    this.cleanup = cleanup;
    this.baseline = baseline;
    this.nodeOptions = nodeOptions;
  }

  /** The control answers these (captured from the service) once it is first needed. */
  setControlRoutes(routes: ControlRoute[]): void {
    this.controlRoutes = routes;
  }

  async get(kind: ServerKind): Promise<ServerProcess> {
    const existing = this.running.get(kind);
    if (existing) return existing;
    const server = kind === 'control' ? await this.startControl() : await this.startService(kind);
    this.running.set(kind, server);
    return server;
  }

  /** Starts a variant outside the on-demand set (start-up samples, profiling): the caller stops it. */
  async startService(
    kind: Exclude<ServerKind, 'control'>,
    options: { overrides?: Record<string, string>; logName?: string; nodeArgs?: string[] } = {},
  ): Promise<ServerProcess> {
    const variant = SERVICE_VARIANTS[kind];
    const logName = options.logName ?? kind;
    const port = await freePort();
    const env = this.env.serverEnv({ ...variant, port, extra: { ...variant.extra, ...options.overrides } });
    const common = {
      name: logName,
      port,
      readyPath: '/ready',
      logPath: logPathFor(logName),
      cleanup: this.cleanup,
    };
    if (kind === 'baseline') {
      if (!this.baseline) throw new Error('no --baseline build in this run');
      return ServerProcess.start({
        ...common,
        node: this.baseline.node,
        args: [...(options.nodeArgs ?? []), 'dist/server.js'],
        env: baselineEnv(this.baseline.node, env),
        cwd: this.baseline.root,
      });
    }
    return ServerProcess.start({
      ...common,
      args: [...(options.nodeArgs ?? []), 'src/main.ts'],
      env: {
        ...env,
        ...this.serviceEnv,
        NODE_OPTIONS: this.nodeOptions,
        NODE_COMPILE_CACHE: this.env.source.compileCacheDir,
      },
      cwd: this.env.source.root,
    });
  }

  private async startControl(): Promise<ServerProcess> {
    if (!this.controlRoutes) throw new Error('control routes not captured yet');
    const routesFile = join(os.tmpdir(), `bench-${process.pid}-control-routes.json`);
    writeFileSync(routesFile, JSON.stringify(this.controlRoutes));
    this.cleanup.add(`remove ${routesFile}`, () => {
      if (existsSync(routesFile)) unlinkSync(routesFile);
    });
    const port = await freePort();
    return ServerProcess.start({
      name: 'control',
      args: ['bench/control-server.ts', routesFile],
      env: { ...process.env, NODE_OPTIONS: '', PORT: String(port) },
      port,
      readyPath: '/health',
      logPath: '/dev/null',
      cleanup: this.cleanup,
    });
  }

  async stop(kind: ServerKind): Promise<void> {
    const server = this.running.get(kind);
    if (!server) return;
    this.running.delete(kind);
    await server.stop();
    server.removeLog();
  }

  async stopAll(): Promise<void> {
    for (const kind of [...this.running.keys()]) await this.stop(kind);
  }
}
