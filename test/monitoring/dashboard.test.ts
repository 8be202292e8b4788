// The Grafana dashboards: portable to any Grafana (a datasource variable, no datasource UIDs), laid out
// with stable panel ids and units, and covering what the issue lists. Their queries are checked against
// the app in queries.test.ts and against a real Prometheus in prometheus-e2e.test.ts.
import { describe, expect, it } from 'vitest';
import { analyze, metricName, type Node, parsePromQL } from './support/promql.ts';
import { allPanels, loadDashboards, type Panel, STATIC_SUBSTITUTION, substitute } from './support/queries.ts';
import { alertThreshold } from './support/thresholds.ts';

/** Grafana's variable syntax (not a template literal): the datasource the viewer picks. */
const DATASOURCE_VARIABLE = ['$', '{datasource}'].join('');
const DATASOURCE = { type: 'prometheus', uid: DATASOURCE_VARIABLE };
const UNITS = new Set(['none', 'short', 'reqps', 'ops', 'percentunit', 's', 'bytes', 'suffix:x']);
const dashboards = loadDashboards();

/** Every object in a JSON tree, with its path. */
function* objects(value: unknown, path = '$'): Generator<[string, Record<string, unknown>]> {
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) yield* objects(v, `${path}[${i}]`);
  } else if (value !== null && typeof value === 'object') {
    yield [path, value as Record<string, unknown>];
    for (const [k, v] of Object.entries(value)) yield* objects(v, `${path}.${k}`);
  }
}

function nodes(node: Node): Node[] {
  const children: Node[] = [];
  switch (node.type) {
    case 'paren':
    case 'unary':
    case 'subquery':
      children.push(node.expr);
      break;
    case 'call':
      children.push(...node.args);
      break;
    case 'aggregate':
      children.push(node.expr, ...(node.param ? [node.param] : []));
      break;
    case 'binary':
      children.push(node.lhs, node.rhs);
      break;
    default:
  }
  return [node, ...children.flatMap(nodes)];
}

const parsed = (p: Panel) =>
  (p.targets ?? []).map((t) => parsePromQL(substitute(t.expr, STATIC_SUBSTITUTION)));
const metricsOf = (p: Panel) =>
  new Set(parsed(p).flatMap((n) => analyze(n, { labels: () => new Set() }).selectors.map(metricName)));

it('when the dashboards folder is read, then it holds the API overview', () => {
  expect(dashboards.map((d) => d.file)).toContain('api-overview.json');
});

describe.each(dashboards)('dashboard $file', ({ dashboard }) => {
  const panels = allPanels(dashboard);
  const dataPanels = panels.filter((p) => p.type !== 'row');

  it('when it is provisioned into any Grafana, then it selects its Prometheus through a datasource variable, never a UID', () => {
    const [first] = dashboard.templating.list;
    expect(first).toMatchObject({ name: 'datasource', type: 'datasource', query: 'prometheus' });
    expect(dashboard.__inputs, 'export-for-sharing leftovers').toBeUndefined();
    expect(dashboard.__requires).toBeUndefined();
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    for (const [path, obj] of objects(dashboard)) {
      if ('datasource' in obj) expect(obj.datasource, path).toEqual(DATASOURCE);
      if ('uid' in obj && obj !== dashboard)
        expect(obj.uid, `${path}: hard-coded uid`).toBe(DATASOURCE_VARIABLE);
    }
    for (const p of dataPanels) {
      expect(p.datasource, `panel ${p.id}`).toEqual(DATASOURCE);
      for (const t of p.targets ?? []) expect(t.datasource, `panel ${p.id} ${t.refId}`).toEqual(DATASOURCE);
    }
  });

  it("when its variables are read, then job and instance come from the app's own series, instance allowing all", () => {
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.job?.query).toBe('label_values(app_build_info, job)');
    expect(vars.instance?.query).toBe('label_values(app_build_info{job="$job"}, instance)');
    expect(vars.instance).toMatchObject({ includeAll: true, multi: true, allValue: '.*' });
    // Every app query is scoped by both variables, so picking an instance filters every panel.
    for (const p of dataPanels)
      for (const t of p.targets ?? []) {
        const selectors = analyze(parsePromQL(t.expr.replaceAll('$__rate_interval', '1m')), {
          labels: () => new Set(),
        }).selectors;
        for (const s of selectors) {
          const job = s.matchers.find((m) => m.name === 'job');
          expect(`${job?.op}${job?.value}`, `panel ${p.id} ${t.refId}: ${metricName(s)}`).toBe('=$job');
          if (!metricName(s).startsWith('job:')) {
            const instance = s.matchers.find((m) => m.name === 'instance');
            expect(`${instance?.op}${instance?.value}`, `panel ${p.id} ${t.refId}: ${metricName(s)}`).toBe(
              '=~$instance',
            );
          }
        }
      }
  });

  it('when its panels are laid out, then ids are unique and explicit, the grid has no overlap, and each data panel has a unit and queries', () => {
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, number>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x >= 0 && w > 0 && x + w <= 24 && h > 0, `panel ${p.id} grid`).toBe(true);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(
            cells.get(`${i},${j}`),
            `panel ${p.id} overlaps panel ${cells.get(`${i},${j}`)}`,
          ).toBeUndefined();
          cells.set(`${i},${j}`, p.id);
        }
    }
    for (const p of dataPanels) {
      expect(UNITS, `panel ${p.id} "${p.title}" unit`).toContain(p.fieldConfig?.defaults?.unit);
      expect(p.title.trim(), `panel ${p.id}`).not.toBe('');
      expect((p.targets ?? []).length, `panel ${p.id} has no query`).toBeGreaterThan(0);
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, `panel ${p.id} refIds`).toBe(refIds.length);
    }
  });

  it('when the overview is read, then it has every panel the issue lists', () => {
    const has = (what: string, test: (p: Panel) => boolean) =>
      expect(dataPanels.some(test), `no panel for ${what}`).toBe(true);
    const quantiles = (p: Panel) =>
      parsed(p)
        .flatMap(nodes)
        .flatMap((n) =>
          n.type === 'call' &&
          n.func === 'histogram_quantile' &&
          n.args[0]?.type === 'number' &&
          n.args[1]?.type === 'aggregate' &&
          n.args[1].grouping.includes('route')
            ? [n.args[0].value]
            : [],
        );
    const groupsBy = (p: Panel, label: string) =>
      parsed(p)
        .flatMap(nodes)
        .some((n) => n.type === 'aggregate' && !n.without && n.grouping.includes(label));
    has('request rate by route', (p) => metricsOf(p).has('http_requests_total') && groupsBy(p, 'route'));
    has('status codes', (p) => metricsOf(p).has('http_requests_total') && groupsBy(p, 'status_code'));
    has('the 5xx error ratio', (p) =>
      (p.targets ?? []).some((t) => t.expr.includes('status_code=~"5.."') && t.expr.includes('/')),
    );
    for (const q of [0.5, 0.95, 0.99]) has(`p${q * 100} latency by route`, (p) => quantiles(p).includes(q));
    has('in-flight requests', (p) => metricsOf(p).has('http_requests_in_flight'));
    has(
      'rate limit decisions',
      (p) => metricsOf(p).has('rate_limit_decisions_total') && groupsBy(p, 'result'),
    );
    has(
      'cache hit ratio by tier',
      (p) =>
        metricsOf(p).has('cache_requests_total') &&
        groupsBy(p, 'tier') &&
        p.fieldConfig?.defaults?.unit === 'percentunit',
    );
    has('auth failures', (p) => metricsOf(p).has('auth_failures_total'));
    has(
      'the Postgres pool',
      (p) => metricsOf(p).has('pg_pool_connections') && metricsOf(p).has('pg_pool_max_connections'),
    );
    has('Redis state', (p) => metricsOf(p).has('redis_up'));
    has('event loop lag', (p) => [...metricsOf(p)].some((m) => m.startsWith('nodejs_eventloop_lag_')));
    has(
      'heap and RSS',
      (p) =>
        metricsOf(p).has('nodejs_heap_size_used_bytes') && metricsOf(p).has('process_resident_memory_bytes'),
    );
    has('GC', (p) => [...metricsOf(p)].some((m) => m.startsWith('nodejs_gc_duration_seconds')));
  });

  it("when a panel draws an alert threshold, then it is the alert's number", () => {
    const memory = dataPanels.find((p) => metricsOf(p).has('process_resident_memory_bytes'));
    const thresholds = memory?.fieldConfig?.defaults?.thresholds as
      | { steps: { value: number | null }[] }
      | undefined;
    const line = thresholds?.steps.find((s) => s.value !== null)?.value;
    expect(line).toBeCloseTo(alertThreshold('ApiMemoryNearLimit').threshold, -1);
  });
});
