// Alertmanager's config and its routing and matching rules, as Alertmanager applies them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ROOT } from './queries.ts';

export interface Route {
  receiver?: string;
  matchers?: string[];
  continue?: boolean;
  group_by?: string[];
  routes?: Route[];
  [key: string]: unknown;
}
export interface InhibitRule {
  source_matchers: string[];
  target_matchers: string[];
  equal?: string[];
}
export interface Config {
  route: Route;
  receivers: { name: string }[];
  inhibit_rules?: InhibitRule[];
  [key: string]: unknown;
}

export const ALERTMANAGER_PATH = join(ROOT, 'monitoring/alertmanager/alertmanager.yml');

export function loadAlertmanagerConfig(): Config {
  return parse(readFileSync(ALERTMANAGER_PATH, 'utf8')) as Config;
}

export interface Matcher {
  name: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** Alertmanager's matcher syntax: name, operator, quoted value. */
export function parseMatcher(text: string): Matcher {
  const m = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"$/.exec(text);
  if (!m) throw new Error(`bad matcher: ${text}`);
  return { name: m[1] as string, op: m[2] as Matcher['op'], value: (m[3] as string).replace(/\\(.)/g, '$1') };
}

export function matches(m: Matcher, labels: Record<string, string>): boolean {
  const v = labels[m.name] ?? '';
  switch (m.op) {
    case '=':
      return v === m.value;
    case '!=':
      return v !== m.value;
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test(v);
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
}

/** The receivers Alertmanager notifies for an alert: depth first, first matching child unless `continue`. */
export function receiversFor(labels: Record<string, string>, route: Route, inherited = 'none'): string[] {
  const receiver = route.receiver ?? inherited;
  const out: string[] = [];
  for (const child of route.routes ?? []) {
    if (!(child.matchers ?? []).map(parseMatcher).every((m) => matches(m, labels))) continue;
    out.push(...receiversFor(labels, child, receiver));
    if (!child.continue) break;
  }
  return out.length > 0 ? out : [receiver];
}
