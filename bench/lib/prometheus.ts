// Owns reading the service's /metrics: a small parser for the counters the bench checks between runs.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (comments skipped; no escapes inside label values expected). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const series = line.slice(0, space);
    const value = Number(line.slice(space + 1));
    const brace = series.indexOf('{');
    const name = brace === -1 ? series : series.slice(0, brace);
    const labels: Record<string, string> = {};
    if (brace !== -1)
      for (const m of series.matchAll(/(\w+)="([^"]*)"/g)) labels[m[1] as string] = m[2] as string;
    out.push({ name, labels, value });
  }
  return out;
}

/** Sum of a metric's series whose labels include every pair of `match`. */
export function sumOf(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

/** GET /metrics; one retry, since a keep-alive socket can be closed under us between two scrapes. */
export async function scrape(baseUrl: string): Promise<Sample[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
      if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
      return parseMetrics(await res.text());
    } catch (err) {
      if (attempt >= 2) {
        const cause = (err as { cause?: unknown }).cause;
        throw new Error(
          `GET ${baseUrl}/metrics failed: ${err instanceof Error ? err.message : err}${cause ? ` (${cause})` : ''}`,
        );
      }
    }
  }
}

export interface RuntimeStats {
  /** Share of the wall time spent in GC pauses. */
  gcPct: number;
  gcCount: number;
  /** Pauses longer than 10 ms (from the histogram's 0.01 bucket). */
  gcOver10ms: number;
  /**
   * prom-client's event-loop delay histogram is reset at every scrape, so the scrape after a run
   * describes that run. Its sampling period (10 ms) is included in the values.
   */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

/** GC and event-loop figures between two scrapes `seconds` apart. */
export function runtimeStats(before: Sample[], after: Sample[], seconds: number): RuntimeStats {
  const d = (name: string, match: Record<string, string> = {}) =>
    sumOf(after, name, match) - sumOf(before, name, match);
  const gcCount = d('nodejs_gc_duration_seconds_count');
  return {
    gcPct: (d('nodejs_gc_duration_seconds_sum') / seconds) * 100,
    gcCount,
    gcOver10ms: gcCount - d('nodejs_gc_duration_seconds_bucket', { le: '0.01' }),
    loopDelayP99Ms: sumOf(after, 'nodejs_eventloop_lag_p99_seconds') * 1000,
    loopDelayMaxMs: sumOf(after, 'nodejs_eventloop_lag_max_seconds') * 1000,
  };
}
