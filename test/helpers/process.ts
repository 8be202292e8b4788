// Runs the real server as a child process and reads its JSON log lines.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  logs: Record<string, unknown>[];
  /** Resolves with the first log line matching `msg`. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** SIGKILLs the process group and waits for the process to exit. */
  stop(): Promise<void>;
}

/** Starts src/main.ts (or `entry`) with Node and the given environment on a free port. */
export async function startServer(
  env: Record<string, string>,
  entry = 'src/main.ts',
): Promise<ServerProcess> {
  return startProcess(process.execPath, [entry], env);
}

/**
 * Starts any command that runs the server (`npm start` in a scratch copy, say) on a free port, in
 * its own process group so that `stop()` ends it and every process it started.
 */
export async function startProcess(
  file: string,
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(file, args, {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOG_PRETTY: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    ...options,
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { msg: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      logs.push(parsed);
      for (const w of waiters.filter((w) => w.msg === parsed.msg)) w.resolve(parsed);
    }
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    port,
    logs,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {
          // already gone
        }
        await exited;
      }
    },
    waitForLog(msg, timeoutMs = 15_000) {
      const found = logs.find((l) => l.msg === msg);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no "${msg}" log within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)),
          timeoutMs,
        );
        waiters.push({
          msg,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}
