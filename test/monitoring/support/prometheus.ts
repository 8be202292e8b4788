// A real Prometheus on 127.0.0.1 for one test file: its own free port, config and TSDB in a temporary
// folder, stopped and removed by stop().
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../../helpers/process.ts';

export interface PrometheusServer {
  url: string;
  /** GET an API path; throws on HTTP errors other than 400/422 (query errors come back as JSON). */
  api<T = unknown>(path: string, params?: Record<string, string>): Promise<ApiResponse<T>>;
  stop(): Promise<void>;
  log(): string;
}

export interface ApiResponse<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

export interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

export async function startPrometheus(options: {
  binary: string;
  scrapeTargets: string[];
  ruleFiles: string[];
  job: string;
  intervalSeconds: number;
  readyTimeoutMs: number;
  /** More command-line flags, e.g. `--enable-feature=exemplar-storage`. */
  flags?: string[];
}): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-e2e-'));
  const port = await freePort();
  const interval = `${options.intervalSeconds}s`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      rule_files: options.ruleFiles,
      scrape_configs: [
        {
          job_name: options.job,
          metrics_path: '/metrics',
          static_configs: [{ targets: options.scrapeTargets }],
        },
      ],
    }),
  );
  let output = '';
  const child: ChildProcess = spawn(
    options.binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
      ...(options.flags ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (c: Buffer) => {
    output = (output + c.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // If the test process dies first, do not leave Prometheus running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));
  let alive = true;
  child.once('exit', () => {
    alive = false;
  });

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (alive) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + options.readyTimeoutMs;
  for (;;) {
    if (!alive) {
      await stop();
      throw new Error(`prometheus exited during startup:\n${output}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready within ${options.readyTimeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    url,
    log: () => output,
    stop,
    async api<T>(path: string, params: Record<string, string> = {}) {
      const query = new URLSearchParams(params).toString();
      const res = await fetch(`${url}${path}${query ? `?${query}` : ''}`);
      if (!res.ok && res.status !== 400 && res.status !== 422)
        throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()) as ApiResponse<T>;
    },
  };
}
