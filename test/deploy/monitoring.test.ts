// Alert rules written once (monitoring/prometheus/alerts.yml, mirrored into the PrometheusRule by
// scripts/sync-prometheus-rule.mjs), and the monitoring configs compose mounts, cross-checked.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type ComposeService,
  durationMs,
  hostPathFor,
  parseCompose,
  publishedPorts,
  serviceEnv,
} from './support/compose.ts';
import { exists, listFiles, ROOT, readText, readYaml, repoPath } from './support/repo.ts';

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: AlertRule[];
}

const ALERTS = 'monitoring/prometheus/alerts.yml';
const RULE = 'k8s/base/prometheus-rule.yaml';
const SYNC = 'scripts/sync-prometheus-rule.mjs';
const alerts = readYaml<{ groups: RuleGroup[] }>(ALERTS);
const alertRules = alerts.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
const { compose } = parseCompose(readText('compose.yaml'), {});
const service = (name: string) => compose.services[name] as ComposeService;

/** Value of a `--flag=value` in a service's command. */
function flag(s: ComposeService, name: string): string | undefined {
  const args = Array.isArray(s.command) ? s.command : [];
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function sync(args: string[]) {
  return spawnSync(process.execPath, [repoPath(SYNC), ...args], { encoding: 'utf8', cwd: ROOT });
}

describe('alert rules', () => {
  it('when alerts.yml is read, then every alert has a severity, a summary, a description and a runbook anchor', () => {
    expect(alerts.groups.length).toBeGreaterThan(0);
    const groupNames = alerts.groups.map((g) => g.name);
    expect(new Set(groupNames).size).toBe(groupNames.length);
    expect(alertRules.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const rule of alertRules) {
      const name = rule.alert as string;
      expect(names.has(name), `${name} is defined twice`).toBe(false);
      names.add(name);
      expect(name).toMatch(/^[A-Z][A-Za-z0-9]+$/);
      expect(rule.expr.trim(), name).not.toBe('');
      if (rule.for !== undefined) expect(() => durationMs(rule.for as string), name).not.toThrow();
      expect(['critical', 'warning', 'info'], name).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, name).toBeTruthy();
      expect(rule.annotations?.description, name).toBeTruthy();
      expect(rule.annotations?.runbook_url, name).toMatch(
        new RegExp(`docs/runbook\\.md#${name.toLowerCase()}$`),
      );
    }
  });

  it('when the PrometheusRule is compared with alerts.yml, then it carries exactly the same groups', () => {
    const rule = parse(readText(RULE)) as { kind: string; spec: { groups: RuleGroup[] } };
    expect(rule.kind).toBe('PrometheusRule');
    expect(
      rule.spec.groups,
      `${RULE} differs from ${ALERTS}: run \`node ${SYNC}\` and commit the result`,
    ).toEqual(alerts.groups);
    const check = sync(['--check']);
    expect(check.status, `${check.stderr}\nrun \`node ${SYNC}\``).toBe(0);
  });

  it('when alerts.yml changes without a sync, then --check fails naming the command, and a sync brings them back in line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rule-sync-'));
    const alertsCopy = join(dir, 'alerts.yml');
    const ruleCopy = join(dir, 'prometheus-rule.yaml');
    copyFileSync(repoPath(RULE), ruleCopy);
    writeFileSync(alertsCopy, readText(ALERTS).replace('for: 2m', 'for: 3m'));
    const stale = sync(['--check', '--alerts', alertsCopy, '--out', ruleCopy]);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain(`run \`node ${SYNC}\``);
    expect(sync(['--alerts', alertsCopy, '--out', ruleCopy]).status).toBe(0);
    expect(sync(['--check', '--alerts', alertsCopy, '--out', ruleCopy]).status).toBe(0);
    const synced = parse(readFileSync(ruleCopy, 'utf8')) as { spec: { groups: RuleGroup[] } };
    expect(synced.spec.groups[0]?.rules[0]?.for).toBe('3m');
  });

  it('when an alert selects a job, then compose scrapes a job of that name and Kubernetes labels its targets so', () => {
    const prometheus = readYaml<{ scrape_configs: { job_name: string }[] }>(
      'monitoring/prometheus/prometheus.yml',
    );
    const composeJobs = prometheus.scrape_configs.map((s) => s.job_name);
    // The Prometheus Operator's job label is the Service name (unless the ServiceMonitor sets jobLabel).
    const monitor = parse(readText('k8s/base/servicemonitor.yaml')) as {
      spec: { jobLabel?: string; selector: { matchLabels: Record<string, string> } };
    };
    expect(monitor.spec.jobLabel).toBeUndefined();
    const svc = parse(readText('k8s/base/service.yaml')) as { metadata: { name: string } };
    for (const rule of alertRules)
      for (const [, job] of rule.expr.matchAll(/job="([^"]+)"/g)) {
        expect(composeJobs, `${rule.alert}: no compose scrape job ${job}`).toContain(job);
        expect(svc.metadata.name, `${rule.alert}: the Kubernetes job label would not be ${job}`).toBe(job);
      }
  });
});

interface GrafanaDatasource {
  name: string;
  uid?: string;
  type: string;
  url: string;
  isDefault?: boolean;
  jsonData?: { exemplarTraceIdDestinations?: { name: string; datasourceUid?: string; url?: string }[] };
}

describe('the monitoring configs compose mounts', () => {
  const prometheusService = service('prometheus');
  const configPath = flag(prometheusService, 'config.file') as string;
  const configHost = hostPathFor(prometheusService, configPath) as string;
  const prometheus = readYaml<{
    rule_files: string[];
    alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
  }>(configHost ?? 'missing');

  it('when Prometheus starts, then its config and every rule file it loads come from this repository', () => {
    expect(configHost, `${configPath} is not mounted from the repository`).toBeDefined();
    expect(exists(configHost)).toBe(true);
    const loaded = prometheus.rule_files.map((f) => posix.resolve(posix.dirname(configPath), f));
    expect(loaded.map((p) => hostPathFor(prometheusService, p))).toEqual([`./${ALERTS}`]);
  });

  it('when Prometheus scrapes, then it reaches the api on its METRICS_PORT and sends alerts to alertmanager', () => {
    const api = prometheus.scrape_configs.find((s) => s.job_name === 'api');
    const { METRICS_PORT } = serviceEnv(service('api'));
    expect(api?.metrics_path ?? '/metrics').toBe('/metrics');
    expect(api?.static_configs.flatMap((c) => c.targets)).toEqual([`api:${METRICS_PORT}`]);
    expect(
      prometheus.scrape_configs.find((s) => s.job_name === 'prometheus')?.static_configs[0]?.targets,
    ).toEqual(['localhost:9090']);
    const targets = prometheus.alerting.alertmanagers.flatMap((a) =>
      a.static_configs.flatMap((c) => c.targets),
    );
    expect(targets).toEqual(['alertmanager:9093']);
    expect(compose.services.alertmanager).toBeDefined();
  });

  it('when Alertmanager starts, then its config routes every severity the alerts use to a receiver it defines', () => {
    const am = service('alertmanager');
    const path = hostPathFor(am, flag(am, 'config.file') as string) as string;
    expect(path && exists(path)).toBe(true);
    interface Route {
      receiver?: string;
      matchers?: string[];
      routes?: Route[];
    }
    const config = readYaml<{ route: Route; receivers: { name: string }[] }>(path);
    const receivers = new Set(config.receivers.map((r) => r.name));
    const walk = (route: Route): Route[] => [route, ...(route.routes ?? []).flatMap(walk)];
    for (const route of walk(config.route)) {
      if (route.receiver !== undefined) expect(receivers, route.receiver).toContain(route.receiver);
      for (const m of route.matchers ?? []) expect(m).toMatch(/^[a-zA-Z_]+(=|!=|=~|!~)"[^"]*"$/);
    }
    for (const severity of new Set(alertRules.map((r) => r.labels?.severity))) {
      const route = (config.route.routes ?? []).find((r) => r.matchers?.includes(`severity="${severity}"`));
      expect(route, `no route for severity ${severity}`).toBeDefined();
    }
  });

  it('when Grafana starts, then it provisions the Prometheus service as datasource and loads dashboards from this repository', () => {
    const grafana = service('grafana');
    const provisioning = hostPathFor(grafana, '/etc/grafana/provisioning') as string;
    expect(provisioning).toBeDefined();
    const files = listFiles(posix.join(provisioning, 'datasources'));
    expect(files.length).toBeGreaterThan(0);
    const datasources = files.flatMap(
      (file) => readYaml<{ datasources: GrafanaDatasource[] }>(file).datasources,
    );
    const prometheusSources = datasources.filter((d) => d.type === 'prometheus');
    expect(prometheusSources.map((d) => d.url)).toEqual(['http://prometheus:9090']);
    expect(prometheusSources[0]?.isDefault).toBe(true);
    expect(datasources.filter((d) => d.isDefault).length).toBe(1);
    const providers = listFiles(posix.join(provisioning, 'dashboards')).flatMap(
      (file) => readYaml<{ providers: { type: string; options: { path: string } }[] }>(file).providers,
    );
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) {
      expect(p.type).toBe('file');
      const host = hostPathFor(grafana, p.options.path);
      expect(host, `${p.options.path} is not mounted`).toBe('./monitoring/grafana/dashboards');
      expect(exists(host as string)).toBe(true);
    }
    expect(serviceEnv(grafana).GF_AUTH_ANONYMOUS_ORG_ROLE).toBe('Viewer');
  });
});

describe('from metrics to traces in compose', () => {
  const grafana = service('grafana');
  const provisioning = hostPathFor(grafana, '/etc/grafana/provisioning') as string;
  const datasources = listFiles(posix.join(provisioning, 'datasources')).flatMap(
    (file) => readYaml<{ datasources: GrafanaDatasource[] }>(file).datasources,
  );

  it('when Grafana starts, then it provisions the jaeger service as a trace datasource, on the port Jaeger serves its query API', () => {
    const traces = datasources.filter((d) => d.type === 'jaeger');
    expect(traces.length).toBe(1);
    const url = new URL((traces[0] as GrafanaDatasource).url);
    expect(url.protocol).toBe('http:');
    expect(compose.services[url.hostname], `${url.hostname} is not a compose service`).toBeDefined();
    expect(service(url.hostname).image).toMatch(/^jaegertracing\/jaeger:/);
    // 16686: Jaeger's query API and UI, the port the jaeger service publishes for the browser too.
    expect(Number(url.port)).toBe(16686);
    expect(publishedPorts(service(url.hostname)).map((p) => p.target)).toContain(16686);
  });

  it('when a latency exemplar is clicked, then Prometheus keeps exemplars and Grafana opens their traceId in the trace datasource', () => {
    const prometheusService = service('prometheus');
    const args = Array.isArray(prometheusService.command) ? prometheusService.command : [];
    const features = args
      .filter((a) => a.startsWith('--enable-feature='))
      .flatMap((a) => a.slice('--enable-feature='.length).split(','));
    expect(features).toContain('exemplar-storage');
    const prom = datasources.find((d) => d.type === 'prometheus') as GrafanaDatasource;
    const destinations = prom.jsonData?.exemplarTraceIdDestinations ?? [];
    expect(destinations.length).toBeGreaterThan(0);
    const uids = new Set(datasources.filter((d) => d.type === 'jaeger').map((d) => d.uid));
    for (const d of destinations) {
      // The exemplar label the API's histogram carries (the trace id of the observed request).
      expect(d.name).toBe('traceId');
      expect(uids, `${d.datasourceUid} is not a provisioned trace datasource`).toContain(d.datasourceUid);
    }
  });
});
