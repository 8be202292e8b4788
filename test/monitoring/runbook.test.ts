// docs/runbook.md: one section per alert, reachable from the alert's runbook_url, each saying what the
// alert means, how to confirm it (PromQL and commands) and what to do; its links resolve.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertRules, RUNBOOK_PATH } from './support/queries.ts';

const runbook = readFileSync(RUNBOOK_PATH, 'utf8');

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.trim().startsWith('```')) fenced = !fenced;
    const h = /^#{1,6}\s+(.+)$/.exec(line);
    if (h && !fenced) out.add(slug(h[1] as string));
  }
  return out;
}

/** The text of each `## ` section, by heading. */
function sections(markdown: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = markdown.split(/^## /m).slice(1);
  for (const part of parts) {
    const nl = part.indexOf('\n');
    out.set(part.slice(0, nl).trim(), part.slice(nl + 1));
  }
  return out;
}

const alerts = alertRules();
const bySection = sections(runbook);

describe('docs/runbook.md', () => {
  it("when an alert links its runbook, then the link lands on that alert's section", () => {
    const own = anchors(runbook);
    for (const rule of alerts) {
      const url = rule.annotations?.runbook_url ?? '';
      const [path, anchor] = url.split('#');
      expect(path, rule.alert).toMatch(/\/docs\/runbook\.md$/);
      expect(anchor, rule.alert).toBe(slug(rule.alert as string));
      expect(own, `${rule.alert}: no heading for #${anchor}`).toContain(anchor);
      expect(bySection.has(rule.alert as string), `no "## ${rule.alert}" section`).toBe(true);
    }
  });

  it('when a section is read, then it says what the alert means, how to confirm it and what to do', () => {
    for (const rule of alerts) {
      const text = bySection.get(rule.alert as string) ?? '';
      const means = text.indexOf('### What it means');
      const confirm = text.indexOf('### How to confirm');
      const todo = text.indexOf('### What to do');
      expect(
        [means, confirm, todo].every((i) => i >= 0),
        `${rule.alert} lacks a subsection`,
      ).toBe(true);
      expect(means < confirm && confirm < todo, `${rule.alert}: subsections out of order`).toBe(true);
      const confirmText = text.slice(confirm, todo);
      expect(confirmText, `${rule.alert}: no PromQL to confirm`).toContain('```promql');
      expect(confirmText, `${rule.alert}: no command to confirm`).toContain('```sh');
      expect(text, `${rule.alert}: the severity differs from alerts.yml`).toContain(
        `**Severity** ${rule.labels?.severity}.`,
      );
    }
  });

  it('when the runbook names an alert, then alerts.yml defines it', () => {
    const names = new Set(alerts.map((r) => r.alert));
    for (const heading of bySection.keys())
      if (/^Api[A-Z]/.test(heading))
        expect(names, `runbook section for unknown alert ${heading}`).toContain(heading);
  });

  it('when the runbook links somewhere in the repository, then the file and its anchor exist', () => {
    const own = anchors(runbook);
    for (const [, target] of runbook.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target as string)) continue;
      const [file, anchor] = (target as string).split('#');
      if (file === '') {
        expect(own, `broken link #${anchor}`).toContain(anchor);
        continue;
      }
      const path = join(dirname(RUNBOOK_PATH), file as string);
      expect(existsSync(path), `broken link ${target}`).toBe(true);
      if (anchor) expect(anchors(readFileSync(path, 'utf8')), `broken link ${target}`).toContain(anchor);
    }
  });
});
