// Design rules of alerts.yml that promtool cannot know: thresholds that stand for numbers kept elsewhere,
// and alerts that never fire on a single evaluation.
import { describe, expect, it } from 'vitest';
import { alertRules, loadRules } from './support/queries.ts';
import { alertThreshold, baseMemoryLimit, memoryBytes } from './support/thresholds.ts';

describe('alerts.yml', () => {
  it('when the memory alert is compared with the Deployment, then it fires at 90 % of the container limit and says which', () => {
    const limit = baseMemoryLimit();
    const { metric, threshold } = alertThreshold('ApiMemoryNearLimit');
    expect(metric).toBe('process_resident_memory_bytes');
    expect(threshold).toBeCloseTo(0.9 * limit, 0);
    const rule = alertRules().find((r) => r.alert === 'ApiMemoryNearLimit');
    expect(rule?.annotations?.description).toContain(`${limit / 2 ** 20} MiB`);
  });

  it('when a memory quantity is read, then binary and decimal suffixes count as Kubernetes counts them', () => {
    expect(memoryBytes('256Mi')).toBe(268_435_456);
    expect(memoryBytes('1Gi')).toBe(1_073_741_824);
    expect(memoryBytes('512M')).toBe(512_000_000);
    expect(() => memoryBytes('256MB')).toThrow();
  });

  it('when an alert is read, then it waits at least a minute before firing', () => {
    for (const rule of alertRules()) {
      expect(rule.for, `${rule.alert} has no for:`).toMatch(/^\d+[mh]$/);
    }
  });

  it('when groups are read, then recording rules come before the alerts that read them', () => {
    const defined = new Set<string>();
    const all = loadRules().flatMap((g) => g.rules);
    const records = new Set(all.flatMap((r) => (r.record ? [r.record] : [])));
    for (const rule of all) {
      for (const name of records)
        if (rule.expr.includes(name))
          expect(defined, `${rule.alert ?? rule.record} reads ${name} before it is defined`).toContain(name);
      if (rule.record) defined.add(rule.record);
    }
  });
});
