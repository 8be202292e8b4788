// Generates k8s/base/prometheus-rule.yaml (a PrometheusRule) from monitoring/prometheus/alerts.yml,
// so alert rules are written once. `--check` changes nothing and exits 1 when the file is stale.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse, stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMMAND = 'node scripts/sync-prometheus-rule.mjs';

const { values } = parseArgs({
  options: {
    check: { type: 'boolean', default: false },
    alerts: { type: 'string', default: resolve(ROOT, 'monitoring/prometheus/alerts.yml') },
    out: { type: 'string', default: resolve(ROOT, 'k8s/base/prometheus-rule.yaml') },
  },
});

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function render(alertsPath) {
  const alerts = parse(readFileSync(alertsPath, 'utf8'));
  if (!Array.isArray(alerts?.groups) || alerts.groups.length === 0)
    fail(`${alertsPath}: expected a Prometheus rule file with a non-empty "groups" list`);
  const rule = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'api', labels: { 'app.kubernetes.io/name': 'api' } },
    spec: { groups: alerts.groups },
  };
  const header =
    `# GENERATED from monitoring/prometheus/alerts.yml by ${COMMAND}: do not edit.\n` +
    "# The same alert groups as compose's Prometheus, for the Prometheus Operator. Add the label your\n" +
    '# Prometheus selects rules by (e.g. release: kube-prometheus-stack) in an overlay.\n';
  return header + stringify(rule, { lineWidth: 0 });
}

const expected = render(values.alerts);
const name = relative(process.cwd(), values.out) || values.out;
if (values.check) {
  const actual = existsSync(values.out) ? readFileSync(values.out, 'utf8') : '';
  if (actual !== expected)
    fail(`${name} is out of date with ${relative(process.cwd(), values.alerts)}: run \`${COMMAND}\``);
  process.stdout.write(`${name} is up to date\n`);
} else {
  writeFileSync(values.out, expected);
  process.stdout.write(`wrote ${name}\n`);
}
