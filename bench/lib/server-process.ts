// Owns one server under test as a child process: spawn, readiness, its log file, RSS/CPU readings, stop.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Cleanup } from './cleanup.ts';
import { cpuMs, mainThreadCpuMs, rssBytes } from './proc.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Asks the OS for a free loopback port (released again before the server binds it: a tiny race we accept). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** One GET with no keep-alive; resolves the status, or 0 when nothing answered. */
function probe(port: number, path: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

export interface LogScan {
  lines: number;
  bytes: number;
  /** Lines at warn, error or fatal level. */
  problems: number;
  /** The first few of them, shortened, for the report. */
  samples: string[];
}

export interface ReadyLine {
  startupMs?: number;
  compileCacheDir?: string | null;
  compileCache?: string;
}

export interface StartOptions {
  name: string;
  /** The Node.js binary: the one running the bench unless said otherwise (the baseline's). */
  node?: string;
  /** Arguments to `node` (script first, or flags then script). */
  args: string[];
  env: NodeJS.ProcessEnv;
  port: number;
  /** Polled until it answers 200. */
  readyPath: string;
  /** stdout (the JSON logs) is appended here; a file lets the bench count lines, /dev/null discards. */
  logPath: string;
  cleanup: Cleanup;
  /** Working directory (the source snapshot for the service); the repository by default. */
  cwd?: string;
  timeoutMs?: number;
}

export class ServerProcess {
  readonly baseUrl: string;
  /** Wall-clock ms from spawn() to the first 200 from the ready path. */
  readyWallMs = Number.NaN;
  /** CPU ms of the server's main thread when the ready path first answered 200 (start-up's own cost). */
  readyMainThreadCpuMs = Number.NaN;
  private stderr = '';
  private exitCode: number | null | undefined;
  private readonly exited: Promise<void>;
  private readonly unregister: () => void;

  readonly name: string;
  readonly port: number;
  readonly logPath: string;
  private readonly child: ChildProcess;
  private readonly cleanup: Cleanup;

  private constructor(name: string, port: number, logPath: string, child: ChildProcess, cleanup: Cleanup) {
    this.name = name;
    this.port = port;
    this.logPath = logPath;
    this.child = child;
    this.cleanup = cleanup;
    this.baseUrl = `http://127.0.0.1:${port}`;
    cleanup.trackPid(child.pid as number);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        cleanup.untrackPid(child.pid as number);
        resolve();
      });
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4000);
    });
    this.unregister = cleanup.add(`stop ${name}`, async () => {
      await this.stop();
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  static async start(o: StartOptions): Promise<ServerProcess> {
    const logFd = openSync(o.logPath, 'a'); // O_APPEND: truncating from outside keeps writes at the new end
    const t0 = performance.now();
    const child = spawn(o.node ?? process.execPath, o.args, {
      cwd: o.cwd ?? REPO_ROOT,
      env: o.env,
      stdio: ['ignore', logFd, 'pipe'],
    });
    closeSync(logFd);
    const server = new ServerProcess(o.name, o.port, o.logPath, child, o.cleanup);
    if (o.logPath !== '/dev/null') o.cleanup.add(`remove ${o.logPath}`, () => rmIfExists(o.logPath));
    const deadline = t0 + (o.timeoutMs ?? 30_000);
    while (performance.now() < deadline) {
      if (server.exitCode !== undefined) break;
      if ((await probe(o.port, o.readyPath, 1000)) === 200) {
        server.readyWallMs = performance.now() - t0;
        server.readyMainThreadCpuMs = mainThreadCpuMs(server.pid) ?? Number.NaN;
        return server;
      }
      await sleep(5);
    }
    const why = server.exitCode !== undefined ? `exited with ${server.exitCode}` : 'did not become ready';
    await server.stop();
    throw new Error(
      `${o.name} ${why}; stderr:\n${server.stderr || '(empty)'}\nlog tail:\n${server.logTail()}`,
    );
  }

  rss(): number | undefined {
    return rssBytes(this.pid);
  }

  cpuMs(): number | undefined {
    return cpuMs(this.pid);
  }

  /** The server's `ready` log line: its own start-to-listening figure (ms since process start) and where
   * its compile cache lives (`compileCacheDir`; the Node 20 baseline says `compileCache` instead). */
  async readyLine(): Promise<ReadyLine | undefined> {
    for (let i = 0; i < 100; i++) {
      for (const line of this.readLog().split('\n')) {
        if (!line.includes('"msg":"ready"')) continue;
        return JSON.parse(line) as ReadyLine;
      }
      await sleep(10);
    }
    return undefined;
  }

  private readLog(): string {
    if (this.logPath === '/dev/null' || !existsSync(this.logPath)) return '';
    return readFileSync(this.logPath, 'utf8');
  }

  /** For error messages: whether the process is still alive, and what it said last. */
  describe(): string {
    const state = this.exitCode === undefined ? 'still running' : `exited with ${this.exitCode}`;
    return `${this.name} (pid ${this.pid}) ${state}; stderr: ${this.stderr.slice(-1000) || '(empty)'}; log tail:\n${this.logTail()}`;
  }

  logTail(): string {
    return this.readLog().split('\n').slice(-10).join('\n');
  }

  /** Counts log lines (one per request is the contract) and warn/error lines since the last truncate. */
  scanLog(): LogScan {
    const text = this.readLog();
    let lines = 0;
    let problems = 0;
    const samples: string[] = [];
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      lines++;
      // pino writes the level label first: a cheap prefix check instead of JSON.parse per line.
      const head = text.slice(start, start + 24);
      if (head.includes('"warn"') || head.includes('"error"') || head.includes('"fatal"')) {
        problems++;
        if (samples.length < 5) samples.push(text.slice(start, Math.min(nl, start + 400)));
      }
      start = nl + 1;
    }
    return { lines, bytes: Buffer.byteLength(text), problems, samples };
  }

  /**
   * Waits until the log file stops growing: pino writes asynchronously, so lines of requests already
   * answered can land a little later (and must not be counted in the next run).
   */
  async logSettled(): Promise<void> {
    if (this.logPath === '/dev/null') return;
    let last = -1;
    for (let i = 0; i < 40; i++) {
      const size = existsSync(this.logPath) ? statSync(this.logPath).size : 0;
      if (size === last) return;
      last = size;
      await sleep(50);
    }
  }

  truncateLog(): void {
    if (this.logPath !== '/dev/null' && existsSync(this.logPath)) truncateSync(this.logPath, 0);
  }

  /** SIGTERM (graceful drain), SIGKILL after 10 s; resolves the exit code. */
  async stop(): Promise<number | null | undefined> {
    this.unregister();
    if (this.exitCode === undefined) {
      this.child.kill('SIGTERM');
      const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(killer);
    }
    return this.exitCode;
  }

  /** Removes the log file (after stop). */
  removeLog(): void {
    rmIfExists(this.logPath);
  }
}

function rmIfExists(path: string): void {
  if (path !== '/dev/null' && existsSync(path)) unlinkSync(path);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
