// Bounded load for the fault tests: N concurrent loops until a deadline or a stop signal.
import http from 'node:http';

export interface Sample {
  status: number;
  ms: number;
  error?: string;
  retryAfter?: string;
  contentType?: string;
}

/** Long mode (`npm run test:resilience`) scales durations and run counts up. */
export const LONG = process.env.RESILIENCE_LONG === '1';
export const scale = (short: number, long: number) => (LONG ? long : short);

export interface RequestSpec {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** One HTTP request over `agent`; transport failures become samples with status 0. */
export function send(port: number, spec: RequestSpec, agent?: http.Agent): Promise<Sample> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: spec.method ?? 'GET',
        path: spec.path,
        headers: { ...(spec.body ? { 'content-type': 'application/json' } : {}), ...spec.headers },
        agent: agent ?? false,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            ms: performance.now() - started,
            ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}),
            ...(res.headers['content-type'] ? { contentType: String(res.headers['content-type']) } : {}),
          }),
        );
      },
    );
    req.on('error', (err) => resolve({ status: 0, ms: performance.now() - started, error: err.message }));
    req.end(spec.body);
  });
}

export interface LoadOptions {
  port: number;
  concurrency: number;
  /** Stops at this many ms, or when `stop()` is called, whichever comes first. */
  maxMs: number;
  next(i: number): RequestSpec;
  agent?: http.Agent;
}

export function startLoad(options: LoadOptions) {
  const samples: Sample[] = [];
  let stopped = false;
  const deadline = Date.now() + options.maxMs;
  let i = 0;
  const loops = Array.from({ length: options.concurrency }, async () => {
    while (!stopped && Date.now() < deadline)
      samples.push(await send(options.port, options.next(i++), options.agent));
  });
  const done = Promise.all(loops).then(() => samples);
  return {
    samples,
    stop() {
      stopped = true;
      return done;
    },
    done,
  };
}

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
};
