// End to end: a real Prometheus on 127.0.0.1 scrapes the running app every second and evaluates the real
// alerts.yml while the app serves traffic; then every alert and recording expression, every dashboard
// panel and variable and every runbook query goes through Prometheus' HTTP API. Each must parse, every
// panel must return data, and the burn-rate alerts must go pending on the app's real 5xx.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiResponse,
  type PrometheusServer,
  startPrometheus,
  type VectorSample,
} from './support/prometheus.ts';
import { parsePromQL, printParenthesized, printPromQL } from './support/promql.ts';
import {
  ALERTS_PATH,
  allQueries,
  loadRules,
  type Query,
  type Substitution,
  substitute,
} from './support/queries.ts';
import { findTool, skipNote } from './support/tools.ts';
import { exercise, expectTrafficCoverage, type ListeningApp, startListeningApp } from './support/traffic.ts';

const prometheusBinary = findTool('prometheus');
const JOB = 'api';
const SCRAPE_SECONDS = 1;
/** How long Prometheus may take to show what the traffic did. */
const SETTLE_MS = 20_000;
/** Every wait of the file ends by then, whatever happens: the whole file stays under a minute. */
const FILE_BUDGET_MS = 55_000;
const fileDeadline = Date.now() + FILE_BUDGET_MS;
/** For the tests that wait on Prometheus. */
const TEST_MS = SETTLE_MS + 10_000;

const E2E: Substitution = {
  // Wider than the whole test, so every sample since Prometheus started is in each window.
  rateInterval: '1m',
  interval: `${SCRAPE_SECONDS}s`,
  range: '5m',
  variables: { job: JOB, instance: '.*' },
};

type QueryData = { resultType: string; result: VectorSample[] | [number, string] };

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = SETTLE_MS,
): Promise<T> {
  const deadline = Math.min(Date.now() + timeoutMs, fileDeadline);
  for (;;) {
    const result = await check();
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const squash = (s: string) => s.replace(/\s+/g, '');

describe.skipIf(!prometheusBinary)(
  `a real Prometheus scraping the running app${skipNote('prometheus', prometheusBinary)}`,
  () => {
    let app: ListeningApp;
    let prom: PrometheusServer;
    const queries = allQueries();
    const query = (expr: string) => prom.api<QueryData>('/api/v1/query', { query: expr });

    /** Resolves once Prometheus has scraped the app at least `scrapes` times after now. */
    async function scrapedAfterNow(scrapes: number) {
      const after = Date.now() / 1000 + (scrapes - 1) * SCRAPE_SECONDS;
      await until(`a scrape after ${after}`, async () => {
        // timestamp() of a plain selector is the scrape time (of an expression, it would be "now").
        const res = await query(`timestamp(up{job="${JOB}"})`);
        const sample = (res.data?.result as VectorSample[] | undefined)?.[0];
        return sample && Number(sample.value[1]) > after ? true : undefined;
      });
    }

    beforeAll(async () => {
      app = await startListeningApp();
      prom = await startPrometheus({
        binary: prometheusBinary as string,
        scrapeTargets: [`127.0.0.1:${app.port}`],
        ruleFiles: [ALERTS_PATH],
        job: JOB,
        intervalSeconds: SCRAPE_SECONDS,
        readyTimeoutMs: 20_000,
      });
      // Counters must be seen before and after they move for rate() to show the move: two rounds of
      // traffic with a scrape between them, then a few more scrapes and rule evaluations.
      await scrapedAfterNow(1);
      expectTrafficCoverage(await exercise(app.t.app, app.baseUrl));
      await scrapedAfterNow(1);
      expectTrafficCoverage(await exercise(app.t.app, app.baseUrl));
      await scrapedAfterNow(2);
    }, 60_000);

    afterAll(async () => {
      await prom?.stop();
      await app?.close();
    });

    it(
      'when Prometheus loads alerts.yml, then every group and rule is there and evaluates without error',
      async () => {
        interface LoadedRule {
          name: string;
          health: string;
          lastError?: string;
          lastEvaluation: string;
        }
        const groups = await until('every rule evaluated', async () => {
          const res = await prom.api<{ groups: { name: string; rules: LoadedRule[] }[] }>('/api/v1/rules');
          const all = res.data.groups.flatMap((g) => g.rules);
          return all.length > 0 && all.every((r) => !r.lastEvaluation.startsWith('0001-'))
            ? res.data.groups
            : undefined;
        });
        // The API lists groups by name; rules keep their order.
        const byName = (a: [string, string[]], b: [string, string[]]) => a[0].localeCompare(b[0]);
        expect(
          groups.map((g): [string, string[]] => [g.name, g.rules.map((r) => r.name)]).sort(byName),
        ).toEqual(
          loadRules()
            .map((g): [string, string[]] => [g.name, g.rules.map((r) => (r.alert ?? r.record) as string)])
            .sort(byName),
        );
        const unhealthy = groups
          .flatMap((g) => g.rules)
          .filter((r) => r.health !== 'ok')
          .map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
        expect(unhealthy).toEqual([]);
      },
      TEST_MS,
    );

    it('when every query is sent to Prometheus, then each parses and evaluates', async () => {
      const failed: string[] = [];
      for (const q of queries) {
        const res = await query(substitute(q.raw, E2E));
        if (res.status !== 'success') failed.push(`${q.source}: ${res.errorType} ${res.error}`);
      }
      expect(failed).toEqual([]);
    });

    it('when Prometheus formats each query, then it reads the same PromQL as the parser of the static checks', async () => {
      const differ: string[] = [];
      for (const q of queries) {
        const expr = substitute(q.raw, E2E);
        const res = await prom.api<string>('/api/v1/format_query', { query: expr });
        expect(res.status, `${q.source}: ${res.error}`).toBe('success');
        const ours = printPromQL(parsePromQL(expr));
        if (squash(ours) !== squash(res.data))
          differ.push(`${q.source}:\n  ours:       ${ours}\n  Prometheus: ${res.data}`);
      }
      expect(differ).toEqual([]);
    });

    it('when operators are mixed without parentheses, then the parser groups them as Prometheus does', async () => {
      // Same value with and without the parser's grouping made explicit: precedence and associativity agree.
      for (const expr of [
        '1 - 2 * 3 ^ 2 ^ 0.5 % 5 + -2 ^ 2',
        '10 / 2 / 5 - 3 - 2',
        '2 ^ 3 ^ 2',
        '-3 ^ 2 + 1',
        '1 + 2 > bool 2 * 1 == bool 1',
        '8 % 3 * 2 atan2 1',
        'sum(vector(1) or vector(2) * 3 and vector(4))',
      ]) {
        const grouped = printParenthesized(parsePromQL(expr));
        const [a, b] = await Promise.all([query(expr), query(grouped)]);
        expect(a.status, expr).toBe('success');
        const value = (r: ApiResponse<QueryData>) =>
          r.data.resultType === 'scalar'
            ? (r.data.result as [number, string])[1]
            : (r.data.result as VectorSample[]).map((s) => s.value[1]).join(',');
        expect(value(b), `${expr} vs ${grouped}`).toBe(value(a));
      }
    });

    it(
      'when every dashboard panel query runs after traffic, then each returns data',
      async () => {
        const panels = queries.filter((q) => q.kind === 'panel');
        const empty = async (q: Query) => {
          const res = await query(substitute(q.raw, E2E));
          if (res.status !== 'success') return `${q.source}: ${res.error}`;
          const result = res.data.result;
          return res.data.resultType === 'vector' && (result as VectorSample[]).length === 0
            ? q.source
            : undefined;
        };
        let missing: string[] = [];
        await until('data in every panel', async () => {
          missing = (await Promise.all(panels.map(empty))).filter((m): m is string => m !== undefined);
          return missing.length === 0 ? true : undefined;
        }).catch(() => undefined);
        expect(missing).toEqual([]);
      },
      TEST_MS,
    );

    it('when the dashboard variables are resolved, then they list the scraped job and instance', async () => {
      for (const q of queries.filter((q) => q.kind === 'variable')) {
        const params = new URLSearchParams({ 'match[]': substitute(q.raw, E2E) });
        const res = (await (await fetch(`${prom.url}/api/v1/label/${q.label}/values?${params}`)).json()) as {
          status: string;
          data: string[];
        };
        expect(res.status, q.source).toBe('success');
        expect(res.data, q.source).toContain(q.label === 'job' ? JOB : `127.0.0.1:${app.port}`);
      }
    });

    it(
      'when users get 5xx answers, then the error budget burn alerts go pending on the real series',
      async () => {
        const burn = ['ApiErrorBudgetBurnFast', 'ApiErrorBudgetBurnMedium', 'ApiErrorBudgetBurnSlow'];
        interface ActiveAlert {
          labels: Record<string, string>;
          state: string;
        }
        let seen: ActiveAlert[] = [];
        const active = await until('the burn rate alerts', async () => {
          const res = await prom.api<{ alerts: ActiveAlert[] }>('/api/v1/alerts');
          seen = res.data.alerts;
          const names = seen.filter((a) => a.labels.job === JOB).map((a) => a.labels.alertname);
          return burn.every((b) => names.includes(b)) ? seen : undefined;
        }).catch(async (err: Error) => {
          const ratios = await query('{__name__=~"job:http_requests_5xx_per_requests:.+"}');
          const raw = await query(`http_requests_total{job="${JOB}"}[1m]`);
          throw new Error(
            `${err.message}\nactive alerts: ${JSON.stringify(seen)}\nratios: ${JSON.stringify(ratios.data)}\nrequests: ${JSON.stringify(raw.data)}`,
          );
        });
        for (const name of burn) {
          const alert = active.find((a) => a.labels.alertname === name);
          expect(['pending', 'firing'], name).toContain(alert?.state);
          expect(alert?.labels.severity).toBe(
            loadRules()
              .flatMap((g) => g.rules)
              .find((r) => r.alert === name)?.labels?.severity,
          );
        }
      },
      TEST_MS,
    );
  },
);
