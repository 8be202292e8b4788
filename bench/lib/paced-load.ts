// Owns an open-loop load at a fixed, evenly spaced request rate over N keep-alive connections.
//
// Why not only autocannon's overallRate: autocannon gives each connection a budget of rate/N requests
// per 1-second window and sends them back to back as soon as the window opens, so "50% of saturation"
// is really saturation for half of every second, and the p99 it reports is the burst's. Here request
// i is due at t0 + i / rate, round-robin over the connections, and its latency counts from when it
// was due (so a stall also delays the requests queued behind it: no coordinated omission).
import http from 'node:http';
import type { LoadRequest } from './load.ts';

export interface PacedResult {
  rate: number;
  sent: number;
  completed: number;
  errors: number;
  non2xx: number;
  achievedPerSec: number;
  /** From when the request was due to the end of its response (includes generator lag and queueing). */
  fromDueMs: Percentiles;
  /** From the call that sent it: what the connection saw. */
  fromSendMs: Percentiles;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function percentiles(values: Float64Array | number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) =>
    sorted.length === 0
      ? Number.NaN
      : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1) };
}

export async function runPaced(o: {
  baseUrl: string;
  request: LoadRequest;
  rate: number;
  connections: number;
  durationS: number;
}): Promise<PacedResult> {
  const url = new URL(o.baseUrl);
  // One agent per connection with one socket each: exactly `connections` keep-alive sockets.
  const agents = Array.from(
    { length: o.connections },
    () => new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 }),
  );
  const requestOptions = (agent: http.Agent): http.RequestOptions => ({
    host: url.hostname,
    port: url.port,
    method: o.request.method,
    path: o.request.path,
    headers: o.request.headers,
    agent,
    timeout: 10_000,
  });
  // Open every connection first (one request each, not measured), so TCP set-up is not in the numbers.
  await Promise.all(
    agents.map(
      (agent) =>
        new Promise<void>((resolve) => {
          const req = http.request(requestOptions(agent), (res) => {
            res.resume();
            res.on('end', () => resolve());
          });
          req.on('error', () => resolve());
          req.end(o.request.body);
        }),
    ),
  );
  const total = Math.round(o.rate * o.durationS);
  const fromDue = new Float64Array(total);
  const fromSend = new Float64Array(total);
  let completed = 0;
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  const interval = 1000 / o.rate;
  const done = new Promise<void>((resolve) => {
    const finishOne = () => {
      if (completed + errors === total) resolve();
    };
    const fire = (i: number, due: number) => {
      const start = performance.now();
      const req = http.request(requestOptions(agents[i % agents.length] as http.Agent), (res) => {
        res.resume();
        res.on('end', () => {
          const end = performance.now();
          fromDue[completed] = end - due;
          fromSend[completed] = end - start;
          completed++;
          if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) non2xx++;
          finishOne();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors++;
        finishOne();
      });
      req.end(o.request.body);
    };
    const t0 = performance.now();
    const tick = () => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        fire(sent, t0 + sent * interval);
        sent++;
      }
      if (sent < total) setTimeout(tick, 1);
    };
    tick();
  });
  const t0 = performance.now();
  await done;
  const elapsed = (performance.now() - t0) / 1000;
  for (const a of agents) a.destroy();
  return {
    rate: o.rate,
    sent,
    completed,
    errors,
    non2xx,
    achievedPerSec: completed / elapsed,
    fromDueMs: percentiles(fromDue.subarray(0, completed)),
    fromSendMs: percentiles(fromSend.subarray(0, completed)),
  };
}
