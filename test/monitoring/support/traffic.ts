// The real app listening on 127.0.0.1, and traffic that makes it export every metric and label value it
// has: items (cached and not), every credential kind good and bad, unknown URLs, probes, a 5xx and
// rate-limited requests.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { buildTestApp, type TestApp } from '../../helpers/app.ts';
import { createKey, signToken } from '../../helpers/auth.ts';

/** Small enough to exceed on purpose, large enough for the ordinary traffic of one credential. */
export const RATE_LIMIT = 40;
/** A route that fails, registered for the test only: the real app has no deterministic 5xx. */
export const FAILING_ROUTE = '/test/fail';

export interface ListeningApp {
  t: TestApp;
  baseUrl: string;
  port: number;
  close(): Promise<void>;
}

export async function startListeningApp(): Promise<ListeningApp> {
  const t = await buildTestApp({
    env: { RATE_LIMIT_MAX_REQUESTS: String(RATE_LIMIT), LOG_LEVEL: 'warn' },
    extend: (app) => {
      app.get(FAILING_ROUTE, async () => {
        throw new Error('failing on purpose for the monitoring tests');
      });
    },
  });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = t.app.server.address() as AddressInfo;
  return { t, port, baseUrl: `http://127.0.0.1:${port}`, close: () => t.close() };
}

async function call(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(base + path, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    // Not JSON: only the status matters here.
  }
  return { status: res.status, json };
}

/** One round of traffic over every route family; returns the statuses seen, for the caller to check. */
export async function exercise(app: FastifyInstance, base: string): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const note = (what: string, status: number) =>
    seen.set(`${what} ${status}`, (seen.get(`${what} ${status}`) ?? 0) + 1);
  const subject = `monitor-${randomUUID().slice(0, 8)}`;
  const { key } = await createKey(app, ['items:read', 'items:write'], { subject });
  const apiKey = { authorization: `Bearer ${key}` };
  const jwt = {
    authorization: `Bearer ${signToken(app, { sub: subject, scope: 'items:read items:write' })}`,
  };

  // Items: writes, cached reads (a miss, then a hit), reads that bypass the cache, list pages.
  for (let i = 0; i < 3; i++) {
    const created = await call(base, 'POST', '/v1/items', apiKey, {
      name: `monitored ${i}`,
      tags: ['monitoring'],
    });
    note('POST /v1/items', created.status);
    const id = created.json.id as string;
    for (const headers of [apiKey, apiKey, { ...apiKey, 'cache-control': 'no-cache' }])
      note('GET /v1/items/:id', (await call(base, 'GET', `/v1/items/${id}`, headers)).status);
    note('GET /v1/items', (await call(base, 'GET', '/v1/items?limit=5', apiKey)).status);
    note('GET /v1/items', (await call(base, 'GET', '/v1/items?limit=5', jwt)).status);
    note(
      'PATCH /v1/items/:id',
      (await call(base, 'PATCH', `/v1/items/${id}`, apiKey, { description: 'seen' })).status,
    );
  }
  note('GET /v1/me', (await call(base, 'GET', '/v1/me', jwt)).status);

  // Every kind of bad credential.
  const [prefix, keyId] = key.split('_') as [string, string];
  const now = Math.floor(Date.now() / 1000);
  const bad: Record<string, Record<string, string>> = {
    missing: {},
    malformed: { authorization: 'Bearer not-a-credential' },
    unknownKey: { authorization: `Bearer ${prefix}_0000000000000000_${'A'.repeat(43)}` },
    wrongSecret: { authorization: `Bearer ${prefix}_${keyId}_${'B'.repeat(43)}` },
    badSignature: {
      authorization: `Bearer ${signToken(app, { sub: subject }, { key: 'not-the-secret-not-the-secret-not-the-secret' })}`,
    },
    expired: {
      authorization: `Bearer ${signToken(app, { sub: subject, iat: now - 7200, exp: now - 3600 })}`,
    },
  };
  for (const [what, headers] of Object.entries(bad))
    note(`GET /v1/me ${what}`, (await call(base, 'GET', '/v1/me', headers)).status);

  // Unknown URLs, probes, a server error.
  note('GET unmatched', (await call(base, 'GET', `/no/such/route/${randomUUID()}`)).status);
  note('GET /health', (await call(base, 'GET', '/health')).status);
  note('GET /ready', (await call(base, 'GET', '/ready')).status);
  for (let i = 0; i < 2; i++) note(`GET ${FAILING_ROUTE}`, (await call(base, 'GET', FAILING_ROUTE)).status);

  // One client past its bucket: the last requests are refused.
  const flood = {
    authorization: `Bearer ${signToken(app, { sub: `${subject}-flood`, scope: 'items:read' })}`,
  };
  const statuses = await Promise.all(
    Array.from({ length: RATE_LIMIT + 10 }, () => call(base, 'GET', '/v1/me', flood).then((r) => r.status)),
  );
  for (const s of statuses) note('GET /v1/me flood', s);
  return seen;
}

/** Checks a round of traffic did what it is for: otherwise a missing metric would be the traffic's fault. */
export function expectTrafficCoverage(seen: Map<string, number>): void {
  for (const expected of [
    'POST /v1/items 201',
    'GET /v1/items/:id 200',
    'GET /v1/items 200',
    'PATCH /v1/items/:id 200',
    'GET /v1/me 200',
    'GET /v1/me missing 401',
    'GET /v1/me wrongSecret 401',
    'GET /v1/me expired 401',
    'GET unmatched 404',
    'GET /ready 200',
    `GET ${FAILING_ROUTE} 500`,
    'GET /v1/me flood 429',
  ])
    expect([...seen.keys()], `traffic did not produce ${expected}`).toContain(expected);
}
