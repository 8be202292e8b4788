// What a query may select: the series the app exports (from a scrape), the series Prometheus adds per
// target, and the outputs of the recording rules (their labels inferred from their expressions).
import type { Exposition } from './exposition.ts';
import { analyze, parsePromQL, type Schema } from './promql.ts';
import type { Rule } from './queries.ts';

/** Labels Prometheus attaches to every scraped series (compose's static config; the k8s ServiceMonitor adds more). */
export const TARGET_LABELS = ['job', 'instance'] as const;
/** Series Prometheus writes for every target, whatever the app exports. */
export const SCRAPE_SERIES = ['up', 'scrape_duration_seconds', 'scrape_samples_scraped'] as const;

export interface MetricCatalog extends Schema {
  /** Label values seen in the scrape (undefined for recorded or synthetic series and for target labels). */
  values(metric: string, label: string): ReadonlySet<string> | undefined;
  recorded: ReadonlySet<string>;
}

export function buildCatalog(exposition: Exposition, rules: Rule[]): MetricCatalog {
  const labels = new Map<string, Set<string>>();
  for (const [name, info] of exposition) labels.set(name, new Set([...info.labels.keys(), ...TARGET_LABELS]));
  for (const name of SCRAPE_SERIES) labels.set(name, new Set(TARGET_LABELS));
  const recorded = new Set<string>();
  const schema: Schema = { labels: (m) => labels.get(m) };
  // Rule files evaluate in order, so a rule may only use records defined above it.
  for (const rule of rules) {
    if (!rule.record) continue;
    const { value } = analyze(parsePromQL(rule.expr), schema);
    const out = new Set(value.kind === 'vector' ? value.labels : []);
    for (const l of Object.keys(rule.labels ?? {})) out.add(l);
    labels.set(rule.record, out);
    recorded.add(rule.record);
  }
  return {
    labels: (m) => labels.get(m),
    values: (m, l) => exposition.get(m)?.labels.get(l),
    recorded,
  };
}
