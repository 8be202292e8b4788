// Every query the repository ships (alert and recording rules, dashboard panels and variables, runbook
// PromQL) against what the running app really exports after its routes are exercised: each selected
// metric exists, each label a query names (matchers, by/without, on/ignoring, group_left, legends,
// alert annotations) exists where it is used, and equality matchers select values the app emits.
//
// Queries are parsed by support/promql.ts, a PromQL parser whose every parse the end-to-end test
// compares with Prometheus' own (format_query), so no regular expression guesses at PromQL here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAlertmanagerConfig, matches, parseMatcher } from './support/alertmanager.ts';
import { type Exposition, parseExposition } from './support/exposition.ts';
import { analyze, metricName, parsePromQL } from './support/promql.ts';
import { allQueries, loadRules, type Query, STATIC_SUBSTITUTION, substitute } from './support/queries.ts';
import { buildCatalog, type MetricCatalog, TARGET_LABELS } from './support/schema.ts';
import { exercise, expectTrafficCoverage, type ListeningApp, startListeningApp } from './support/traffic.ts';

let app: ListeningApp;
let exposition: Exposition;
let catalog: MetricCatalog;
const queries = allQueries();

beforeAll(async () => {
  app = await startListeningApp();
  expectTrafficCoverage(await exercise(app.t.app, app.baseUrl));
  const res = await fetch(`${app.baseUrl}/metrics`);
  exposition = parseExposition(await res.text());
  catalog = buildCatalog(
    exposition,
    loadRules().flatMap((g) => g.rules),
  );
});
afterAll(async () => {
  await app?.close();
});

const analysed = (q: Query) => analyze(parsePromQL(substitute(q.raw, STATIC_SUBSTITUTION)), catalog);

describe('the queries the repository ships', () => {
  it('when they are collected, then rules, every dashboard panel, the variables and the runbook all contribute', () => {
    const kinds = new Set(queries.map((q) => q.kind));
    expect([...kinds].sort()).toEqual(['alert', 'panel', 'record', 'runbook', 'variable']);
    expect(queries.filter((q) => q.kind === 'panel').length).toBeGreaterThan(20);
  });

  it('when each is parsed, then it is valid PromQL', () => {
    const errors = queries.flatMap((q) => {
      try {
        parsePromQL(substitute(q.raw, STATIC_SUBSTITUTION));
        return [];
      } catch (err) {
        return [`${q.source}: ${(err as Error).message}`];
      }
    });
    expect(errors).toEqual([]);
  });

  it('when the app has served every kind of request, then every metric a query selects is exported', () => {
    const unknown = queries.flatMap((q) =>
      analysed(q)
        .selectors.map((s) => metricName(s))
        .filter((name) => catalog.labels(name) === undefined)
        .map((name) => `${q.source}: ${name}`),
    );
    expect(unknown).toEqual([]);
    // Recording rules stand in for metrics only when a rule defines them.
    expect([...catalog.recorded].every((r) => exposition.get(r) === undefined)).toBe(true);
  });

  it('when a query names a label (matcher, by, without, on, ignoring, group_left), then the metric it applies to has it', () => {
    const problems = queries.flatMap((q) => analysed(q).problems.map((p) => `${q.source}: ${p}`));
    expect(problems).toEqual([]);
  });

  it('when a matcher asks for an exact label value, then the app exports series with that value', () => {
    const problems: string[] = [];
    for (const q of queries)
      for (const s of analysed(q).selectors)
        for (const m of s.matchers) {
          if (m.op !== '=' || m.name === '__name__' || (TARGET_LABELS as readonly string[]).includes(m.name))
            continue;
          const values = catalog.values(metricName(s), m.name);
          if (values === undefined) continue; // recorded series: their labels are checked above
          if (!values.has(m.value))
            problems.push(
              `${q.source}: ${metricName(s)}{${m.name}="${m.value}"} never seen (seen: ${[...values].join(', ')})`,
            );
        }
    expect(problems).toEqual([]);
  });

  it('when an alert annotation, a panel legend or a variable uses a label, then the query result carries it', () => {
    const problems: string[] = [];
    for (const q of queries) {
      const { value } = analysed(q);
      const labels = value.kind === 'vector' ? value.labels : new Set<string>();
      for (const l of q.usesLabels)
        if (!labels.has(l))
          problems.push(`${q.source} uses {{${l}}} but its result has {${[...labels].sort().join(', ')}}`);
    }
    expect(problems).toEqual([]);
  });

  it('when Alertmanager inhibits an alert by another, then both alerts carry every label the rule compares', () => {
    // A label missing on both sides counts as equal: the rule would then inhibit across instances or jobs.
    const alerts = queries.filter((q) => q.kind === 'alert');
    const labelsOf = (q: Query) => {
      const { value } = analysed(q);
      return new Set([
        ...(value.kind === 'vector' ? value.labels : []),
        ...Object.keys(q.rule?.labels ?? {}),
      ]);
    };
    const selected = (matchers: string[]) =>
      alerts.filter((q) =>
        matchers
          .map(parseMatcher)
          .every((m) => matches(m, { alertname: q.rule?.alert as string, ...q.rule?.labels })),
      );
    const problems: string[] = [];
    for (const rule of loadAlertmanagerConfig().inhibit_rules ?? [])
      for (const q of [...selected(rule.source_matchers), ...selected(rule.target_matchers)])
        for (const l of rule.equal ?? [])
          if (!labelsOf(q).has(l))
            problems.push(`inhibit rule equal: [${l}] but ${q.rule?.alert} has no ${l}`);
    expect(problems).toEqual([]);
  });

  it('when a rule selects a job, then it is the api job and every alert expression filters on it', () => {
    for (const q of queries.filter((q) => q.kind === 'alert' || q.kind === 'record')) {
      const jobs = analysed(q).selectors.flatMap((s) => s.matchers.filter((m) => m.name === 'job'));
      expect(jobs.length, `${q.source} does not select job="api"`).toBeGreaterThan(0);
      for (const m of jobs) expect(`${m.name}${m.op}"${m.value}"`, q.source).toBe('job="api"');
    }
  });
});

describe('the query checker itself', () => {
  const problemsOf = (expr: string) => {
    const a = analyze(parsePromQL(expr), catalog);
    return [...a.problems, ...a.selectors.map(metricName).filter((n) => !catalog.labels(n))];
  };

  it('when a query names a metric the app does not export, then it is reported', () => {
    expect(problemsOf('sum(rate(http_request_total[5m]))').join('\n')).toContain('http_request_total');
    expect(problemsOf('http_request_duration_seconds{route="/v1/notes"}').join('\n')).toContain(
      'http_request_duration_seconds',
    );
  });

  it('when a query names a label where it does not exist, then it is reported, wherever the label appears', () => {
    expect(problemsOf('http_requests_in_flight{route="/v1/notes"}').join()).toContain('no label "route"');
    expect(problemsOf('sum by (path) (rate(http_requests_total[5m]))').join()).toContain('"path"');
    expect(problemsOf('sum without (state) (redis_up)').join()).toContain('"state"');
    expect(problemsOf('redis_up / on (job, state) app_ready').join()).toContain('on (state)');
    expect(
      problemsOf('app_ready * on (instance) group_left (version, tier) app_build_info').join(),
    ).toContain('group_left (tier)');
    expect(
      problemsOf(
        'histogram_quantile(0.9, sum by (route) (rate(http_request_duration_seconds_bucket[5m])))',
      ).join(),
    ).toContain('without "le"');
    // A one-to-one match between different label sets returns nothing, silently.
    expect(problemsOf('pg_pool_connections / pg_pool_max_connections').join()).toContain('never matches');
    expect(problemsOf('pg_pool_connections / ignoring (state) pg_pool_max_connections')).toEqual([]);
  });

  it('when labels pass through functions, aggregations and matching, then the result carries the right ones', () => {
    const labels = (expr: string) => {
      const { value } = analyze(parsePromQL(expr), catalog);
      return value.kind === 'vector' ? [...value.labels].sort() : value.kind;
    };
    expect(labels('sum by (route, le) (rate(http_request_duration_seconds_bucket[5m]))')).toEqual([
      'le',
      'route',
    ]);
    expect(
      labels('histogram_quantile(0.5, sum by (route, le) (rate(http_request_duration_seconds_bucket[5m])))'),
    ).toEqual(['route']);
    expect(labels('sum without (method, status_code) (rate(http_requests_total[5m]))')).toEqual([
      'instance',
      'job',
      'route',
    ]);
    expect(labels('redis_up == 0 or absent(redis_up{job="api"})')).toEqual(['instance', 'job']);
    expect(labels('absent(redis_up{job="api"})')).toEqual(['job']);
    expect(labels('app_ready * on (instance) group_left (version) app_build_info')).toEqual([
      'instance',
      'job',
      'version',
    ]);
    expect(labels('scalar(sum(app_ready)) * 2')).toBe('scalar');
    expect(labels('label_replace(up, "pod", "$1", "instance", "(.*):.*")')).toEqual([
      'instance',
      'job',
      'pod',
    ]);
  });
});
