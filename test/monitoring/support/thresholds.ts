// The numbers alerts.yml shares with other files: the memory alert's threshold and the container limit
// it stands for.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { constantValue, parsePromQL } from './promql.ts';
import { alertRules, ROOT } from './queries.ts';

/** Kubernetes memory quantity ("256Mi", "1G", "512000000") in bytes. */
export function memoryBytes(quantity: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (!m) throw new Error(`unsupported memory quantity ${quantity}`);
  const unit: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(m[1]) * (m[2] ? (unit[m[2]] as number) : 1);
}

/** limits.memory of the api container in k8s/base/deployment.yaml, in bytes. */
export function baseMemoryLimit(): number {
  const deployment = parse(readFileSync(join(ROOT, 'k8s/base/deployment.yaml'), 'utf8')) as {
    spec: {
      template: { spec: { containers: { name: string; resources: { limits: { memory: string } } }[] } };
    };
  };
  const api = deployment.spec.template.spec.containers.find((c) => c.name === 'api');
  if (!api) throw new Error('no api container in k8s/base/deployment.yaml');
  return memoryBytes(api.resources.limits.memory);
}

/** `<metric selector> > <constant>`: the constant of the named alert. */
export function alertThreshold(alert: string): { metric: string; threshold: number } {
  const rule = alertRules().find((r) => r.alert === alert);
  if (!rule) throw new Error(`no alert ${alert}`);
  const expr = parsePromQL(rule.expr);
  if (expr.type !== 'binary' || expr.op !== '>' || expr.lhs.type !== 'selector')
    throw new Error(`${alert}: expected "<selector> > <constant>", got ${rule.expr}`);
  const threshold = constantValue(expr.rhs);
  if (threshold === undefined) throw new Error(`${alert}: the threshold is not a constant`);
  return { metric: expr.lhs.name, threshold };
}
