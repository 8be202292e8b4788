// Every PromQL query the repository ships: alert and recording rules, dashboard panels and variables,
// and the runbook's ```promql blocks; with Grafana's variables substituted the way Grafana would.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const ALERTS_PATH = join(ROOT, 'monitoring/prometheus/alerts.yml');
export const ALERTS_TEST_PATH = join(ROOT, 'monitoring/prometheus/alerts.test.yml');
export const PROMETHEUS_CONFIG_PATH = join(ROOT, 'monitoring/prometheus/prometheus.yml');
export const DASHBOARDS_DIR = join(ROOT, 'monitoring/grafana/dashboards');
export const RUNBOOK_PATH = join(ROOT, 'docs/runbook.md');

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}

export function loadRules(): RuleGroup[] {
  return (parse(readFileSync(ALERTS_PATH, 'utf8')) as { groups: RuleGroup[] }).groups;
}
export const alertRules = (groups = loadRules()) => groups.flatMap((g) => g.rules).filter((r) => r.alert);
export const recordingRules = (groups = loadRules()) =>
  groups.flatMap((g) => g.rules).filter((r) => r.record);

// --- Grafana ----------------------------------------------------------------------------------------

export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
  [key: string]: unknown;
}
export interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { unit?: string; [key: string]: unknown }; overrides?: unknown[] };
  [key: string]: unknown;
}
export interface TemplateVariable {
  name: string;
  type: string;
  query?: string | { query?: string; qryType?: number; refId?: string };
  definition?: string;
  datasource?: { type?: string; uid?: string };
  includeAll?: boolean;
  allValue?: string;
  multi?: boolean;
  [key: string]: unknown;
}
export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: TemplateVariable[] };
  [key: string]: unknown;
}

export function loadDashboards(): { file: string; dashboard: Dashboard }[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({
      file,
      dashboard: JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as Dashboard,
    }));
}

/** Every panel, rows' collapsed children included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** What Grafana puts in place of its built-in and dashboard variables, for a query evaluated "now". */
export interface Substitution {
  rateInterval: string;
  interval: string;
  range: string;
  variables: Record<string, string>;
}

export const STATIC_SUBSTITUTION: Substitution = {
  rateInterval: '1m',
  interval: '15s',
  range: '1h',
  variables: { job: 'api', instance: '.*' },
};

export function substitute(expr: string, s: Substitution): string {
  return expr.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
    (whole, braced: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare) as string;
      if (name === '__rate_interval') return s.rateInterval;
      if (name === '__interval') return s.interval;
      if (name === '__range') return s.range;
      const value = s.variables[name];
      if (value === undefined) throw new Error(`no substitution for Grafana variable ${whole} in: ${expr}`);
      return value;
    },
  );
}

/** label_values(<selector>, <label>) of a query variable, the only variable query form the dashboards use. */
export function parseLabelValues(query: string): { selector: string; label: string } {
  const m = /^\s*label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(query);
  if (!m) throw new Error(`unsupported variable query (expected label_values(selector, label)): ${query}`);
  return { selector: m[1] as string, label: m[2] as string };
}

export function variableQuery(v: TemplateVariable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? v.definition ?? '');
}

// --- Every query --------------------------------------------------------------------------------------

export interface Query {
  /** Where it comes from, for messages. */
  source: string;
  kind: 'alert' | 'record' | 'panel' | 'variable' | 'runbook';
  /** As written (dashboard variables unsubstituted). */
  raw: string;
  /** Labels the result must carry: alert annotation templates, panel legends, variable label. */
  usesLabels: string[];
  /** For variables: the label whose values are listed. */
  label?: string;
  /** For panels. */
  panel?: Panel;
  rule?: Rule;
}

function templateLabels(text: string): string[] {
  return [...text.matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)].map((m) => m[1] as string);
}
function legendLabels(text: string | undefined): string[] {
  return [...(text ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map((m) => m[1] as string);
}

export function runbookQueries(): Query[] {
  const text = readFileSync(RUNBOOK_PATH, 'utf8');
  const out: Query[] = [];
  let section = '(top)';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const heading = /^##\s+(.+?)\s*$/.exec(line);
    if (heading) section = heading[1] as string;
    if (line.trim() === '```promql') {
      const body: string[] = [];
      for (i++; i < lines.length && (lines[i] as string).trim() !== '```'; i++) body.push(lines[i] as string);
      out.push({
        source: `docs/runbook.md § ${section}`,
        kind: 'runbook',
        raw: body.join('\n'),
        usesLabels: [],
      });
    }
  }
  return out;
}

export function allQueries(): Query[] {
  const queries: Query[] = [];
  for (const rule of loadRules().flatMap((g) => g.rules)) {
    const annotations = Object.values(rule.annotations ?? {}).join('\n');
    queries.push({
      source: `alerts.yml ${rule.alert ?? rule.record}`,
      kind: rule.alert ? 'alert' : 'record',
      raw: rule.expr,
      usesLabels: templateLabels(annotations).filter((l) => !(rule.labels && l in rule.labels)),
      rule,
    });
  }
  for (const { file, dashboard } of loadDashboards()) {
    for (const panel of allPanels(dashboard))
      for (const target of panel.targets ?? [])
        queries.push({
          source: `${file} panel ${panel.id} "${panel.title}" ${target.refId}`,
          kind: 'panel',
          raw: target.expr,
          usesLabels: legendLabels(target.legendFormat),
          panel,
        });
    for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const { selector, label } = parseLabelValues(variableQuery(v));
      queries.push({
        source: `${file} variable $${v.name}`,
        kind: 'variable',
        raw: selector,
        usesLabels: [label],
        label,
      });
    }
  }
  queries.push(...runbookQueries());
  return queries;
}
