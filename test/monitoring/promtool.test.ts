// The Prometheus configuration and rules, checked by promtool, and the promtool unit tests of every
// alert (alerts.test.yml): they pass, they cover every alert firing and silent and every recording
// rule, and they really check it: rules broken on purpose make them fail.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { analyze, metricName, parsePromQL } from './support/promql.ts';
import {
  ALERTS_PATH,
  ALERTS_TEST_PATH,
  alertRules,
  loadRules,
  PROMETHEUS_CONFIG_PATH,
  ROOT,
  type RuleGroup,
  recordingRules,
} from './support/queries.ts';
import { findTool, skipNote } from './support/tools.ts';

const run = promisify(execFile);
const promtool = findTool('promtool');

interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string>; exp_annotations?: Record<string, string> }[];
}
interface TestGroup {
  name?: string;
  alert_rule_test?: AlertTest[];
  promql_expr_test?: { expr: string; eval_time: string; exp_samples: unknown[] }[];
}
const unitTests = parse(readFileSync(ALERTS_TEST_PATH, 'utf8')) as {
  rule_files: string[];
  tests: TestGroup[];
};
const alerts = alertRules();
const records = recordingRules();

async function promtoolRun(args: string[], cwd = ROOT): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(promtool as string, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** promtool's failure report: one block per failing alert case or expression case. */
function failures(output: string) {
  const alertCases: { alertname: string; time: string; expectedNone: boolean; gotNone: boolean }[] = [];
  const exprCases: string[] = [];
  const lines = output.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const alert = /^\s*alertname: (\S+), time: (\S+),\s*$/.exec(lines[i] as string);
    if (alert) {
      const block: string[] = [];
      for (let j = i + 1; j < lines.length && !/^\s*(alertname|expr):|FAILED/.test(lines[j] as string); j++)
        block.push(lines[j] as string);
      const text = block.join('\n');
      alertCases.push({
        alertname: alert[1] as string,
        time: alert[2] as string,
        expectedNone: /exp:\[\],/.test(text),
        gotNone: /got:\[\]/.test(text),
      });
    }
    const expr = /^\s*expr: "(.*)", time: /.exec(lines[i] as string);
    if (expr) exprCases.push(expr[1] as string);
  }
  return { alertCases, exprCases };
}

/** A copy of the rules and their unit tests in a temporary folder, with some expressions replaced. */
function mutated(
  dir: string,
  replace: (rule: { alert?: string; record?: string; expr: string }) => string | undefined,
) {
  const groups = loadRules().map((g: RuleGroup) => ({
    ...g,
    rules: g.rules.map((r) => ({ ...r, expr: replace(r) ?? r.expr })),
  }));
  writeFileSync(join(dir, 'alerts.yml'), stringify({ groups }));
  copyFileSync(ALERTS_TEST_PATH, join(dir, 'alerts.test.yml'));
  return join(dir, 'alerts.test.yml');
}

describe('the unit tests cover every rule', () => {
  const cases = unitTests.tests.flatMap((g) => g.alert_rule_test ?? []);

  it('when alerts.test.yml is read, then every alert has a firing case with its labels and annotations, and a silent case', () => {
    expect(unitTests.rule_files).toEqual(['alerts.yml']);
    for (const rule of alerts) {
      const name = rule.alert as string;
      const mine = cases.filter((c) => c.alertname === name);
      const firing = mine.filter((c) => (c.exp_alerts ?? []).length > 0);
      expect(firing.length, `${name} never fires in alerts.test.yml`).toBeGreaterThan(0);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${name} is never tested silent`,
      ).toBe(true);
      for (const c of firing)
        for (const a of c.exp_alerts ?? []) {
          expect(a.exp_labels?.severity, `${name} at ${c.eval_time}`).toBe(rule.labels?.severity);
          expect(Object.keys(a.exp_annotations ?? {}).sort(), `${name} at ${c.eval_time}`).toEqual(
            Object.keys(rule.annotations ?? {}).sort(),
          );
        }
    }
    const known = new Set(alerts.map((r) => r.alert));
    for (const c of cases)
      expect(known, `alerts.test.yml tests unknown alert ${c.alertname}`).toContain(c.alertname);
  });

  it('when alerts.test.yml is read, then every recording rule has an expression test', () => {
    const tested = new Set(
      unitTests.tests
        .flatMap((g) => g.promql_expr_test ?? [])
        .flatMap((t) => analyze(parsePromQL(t.expr), { labels: () => new Set() }).selectors.map(metricName)),
    );
    for (const r of records) expect(tested, `${r.record} has no promql_expr_test`).toContain(r.record);
  });
});

describe.skipIf(!promtool)(`promtool${skipNote('promtool', promtool)}`, () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'promtool-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('when the compose Prometheus config is checked, then it and the rule file it loads are valid', async () => {
    const { code, output } = await promtoolRun(['check', 'config', PROMETHEUS_CONFIG_PATH]);
    expect(code, output).toBe(0);
    expect(output).toContain('SUCCESS: 1 rule files found');
    expect(output).toContain(`SUCCESS: ${alerts.length + records.length} rules found`);
  });

  it('when the rules are checked, then promtool accepts every group and rule', async () => {
    const { code, output } = await promtoolRun(['check', 'rules', ALERTS_PATH]);
    expect(code, output).toBe(0);
    expect(output).toContain(`SUCCESS: ${alerts.length + records.length} rules found`);
  });

  it('when the rule unit tests run, then every case passes', async () => {
    const { code, output } = await promtoolRun(['test', 'rules', ALERTS_TEST_PATH]);
    expect(code, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  it('when every alert is broken on purpose, then the unit tests catch each one firing too little and too much', async () => {
    // Never fires: each alert's firing cases must fail. Fires always (after its for:): each alert's
    // silent cases must fail. Recording rules record a constant: their expression tests must fail.
    const never = mutated(tempDir(), (r) =>
      r.alert ? 'vector(1) > 2' : r.record ? 'vector(42)' : undefined,
    );
    const always = mutated(tempDir(), (r) => (r.alert ? 'vector(1)' : undefined));
    const [neverRun, alwaysRun] = await Promise.all([
      promtoolRun(['test', 'rules', never]),
      promtoolRun(['test', 'rules', always]),
    ]);
    expect(neverRun.code, neverRun.output).not.toBe(0);
    expect(alwaysRun.code, alwaysRun.output).not.toBe(0);
    const missed = failures(neverRun.output);
    const overfired = failures(alwaysRun.output);
    for (const rule of alerts) {
      const name = rule.alert as string;
      expect(
        missed.alertCases.some((c) => c.alertname === name && !c.expectedNone && c.gotNone),
        `no unit test notices ${name} never firing`,
      ).toBe(true);
      expect(
        overfired.alertCases.some((c) => c.alertname === name && c.expectedNone && !c.gotNone),
        `no unit test notices ${name} firing when it should be silent`,
      ).toBe(true);
    }
    for (const rule of records)
      expect(
        missed.exprCases.some((e) => e.includes(rule.record as string)),
        `no unit test notices ${rule.record} recording the wrong value`,
      ).toBe(true);
  });
});
