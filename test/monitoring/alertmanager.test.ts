// Alertmanager's example config (amtool is not in CI): its structure, every alert of alerts.yml routed
// through its tree the way Alertmanager routes, and inhibit rules that name alerts which exist.
import { describe, expect, it } from 'vitest';
import {
  loadAlertmanagerConfig,
  matches,
  parseMatcher,
  type Route,
  receiversFor,
} from './support/alertmanager.ts';
import { alertRules } from './support/queries.ts';

const config = loadAlertmanagerConfig();
const alerts = alertRules();
const alertNames = alerts.map((r) => r.alert as string);
const route = (labels: Record<string, string>) => receiversFor(labels, config.route);

describe('alertmanager.yml', () => {
  it('when it is read, then every route names a defined receiver and uses valid matchers', () => {
    const names = config.receivers.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    expect(
      Object.keys(config).every((k) =>
        ['global', 'route', 'receivers', 'inhibit_rules', 'templates', 'time_intervals'].includes(k),
      ),
    ).toBe(true);
    const walk = (r: Route): Route[] => [r, ...(r.routes ?? []).flatMap(walk)];
    expect(config.route.receiver, 'the root route needs a receiver').toBeDefined();
    expect(config.route.group_by).toContain('alertname');
    for (const r of walk(config.route)) {
      if (r.receiver !== undefined) expect(names).toContain(r.receiver);
      for (const m of r.matchers ?? []) expect(() => parseMatcher(m)).not.toThrow();
    }
  });

  it('when each alert of alerts.yml is routed, then it reaches exactly the receiver of its severity', () => {
    for (const rule of alerts) {
      const labels = { alertname: rule.alert as string, job: 'api', ...rule.labels };
      expect(route(labels), rule.alert).toEqual([rule.labels?.severity]);
    }
    for (const severity of ['critical', 'warning', 'info'])
      expect(route({ alertname: 'Any', severity })).toEqual([severity]);
  });

  it('when an alert carries no severity, then it falls through to the default receiver', () => {
    expect(route({ alertname: 'ApiSomethingNew', job: 'api' })).toEqual([config.route.receiver]);
    expect(route({ alertname: 'ApiSomethingNew', severity: 'page' })).toEqual([config.route.receiver]);
  });

  it('when an inhibit rule names alerts, then they exist in alerts.yml on both sides', () => {
    expect((config.inhibit_rules ?? []).length).toBeGreaterThan(0);
    for (const rule of config.inhibit_rules ?? []) {
      for (const side of [rule.source_matchers, rule.target_matchers]) {
        const matchers = side.map(parseMatcher);
        const selected = alerts.filter((a) =>
          matchers.every((m) => matches(m, { alertname: a.alert as string, ...a.labels })),
        );
        expect(selected.length, `${side.join(', ')} selects no alert of alerts.yml`).toBeGreaterThan(0);
        // Each name in an alternation must exist: a renamed alert would otherwise drop out silently.
        for (const m of matchers.filter((m) => m.name === 'alertname' && (m.op === '=' || m.op === '=~')))
          for (const name of m.value.split('|'))
            expect(alertNames, `inhibit rule names ${name}`).toContain(name);
      }
      expect(rule.equal?.length, 'an inhibit rule without equal labels inhibits across jobs').toBeGreaterThan(
        0,
      );
    }
  });
});
