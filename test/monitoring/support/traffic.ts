// The real app listening on 127.0.0.1, and traffic that makes it export every metric and label value it
// has: a resource's reads and writes (cached and not), API key admin, every credential kind good and
// bad, unknown URLs, probes, a 5xx and rate-limited requests.
// The resource is the test-only notes fixture: the metrics must not depend on the example resource.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import { buildTestApp, type TestApp } from '../../helpers/app.ts';
import { createKey, signToken } from '../../helpers/auth.ts';
import { notes } from '../../helpers/notes.ts';

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
    extend: async (app) => {
      app.get(FAILING_ROUTE, async () => {
        throw new Error('failing on purpose for the monitoring tests');
      });
      await notes()(app);
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
  const { key } = await createKey(app, ['admin'], { subject });
  const apiKey = { authorization: `Bearer ${key}` };
  const jwt = { authorization: `Bearer ${signToken(app, { sub: subject, scope: 'admin' })}` };

  // A resource: writes, cached reads (a miss, then a hit), reads that bypass the cache, list pages.
  for (let i = 0; i < 3; i++) {
    const created = await call(base, 'POST', '/v1/notes', apiKey, { name: `monitored ${i}` });
    note('POST /v1/notes', created.status);
    const id = created.json.id as string;
    for (const headers of [apiKey, apiKey, { ...apiKey, 'cache-control': 'no-cache' }])
      note('GET /v1/notes/:id', (await call(base, 'GET', `/v1/notes/${id}`, headers)).status);
    note('GET /v1/notes', (await call(base, 'GET', '/v1/notes?limit=5', apiKey)).status);
    note('GET /v1/notes', (await call(base, 'GET', '/v1/notes?limit=5', jwt)).status);
    note(
      'PATCH /v1/notes/:id',
      (await call(base, 'PATCH', `/v1/notes/${id}`, apiKey, { name: `seen ${i}` })).status,
    );
  }

  // The platform's own routes: API key admin, a token exchange, the caller's identity.
  const issued = await call(base, 'POST', '/v1/api-keys', apiKey, { name: 'monitored', scopes: ['admin'] });
  note('POST /v1/api-keys', issued.status);
  note('GET /v1/api-keys', (await call(base, 'GET', '/v1/api-keys?limit=5', jwt)).status);
  note(
    'DELETE /v1/api-keys/:id',
    (await call(base, 'DELETE', `/v1/api-keys/${issued.json.id as string}`, apiKey)).status,
  );
  note('POST /v1/auth/token', (await call(base, 'POST', '/v1/auth/token', apiKey, {})).status);
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
      authorization: `Bearer ${signToken(app, { sub: subject, scope: 'admin' }, { key: 'not-the-secret-not-the-secret-not-the-secret' })}`,
    },
    expired: {
      authorization: `Bearer ${signToken(app, { sub: subject, scope: 'admin', iat: now - 7200, exp: now - 3600 })}`,
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
    authorization: `Bearer ${signToken(app, { sub: `${subject}-flood`, scope: 'admin' })}`,
  };
  const statuses = await Promise.all(
    Array.from({ length: RATE_LIMIT + 10 }, () => call(base, 'GET', '/v1/me', flood).then((r) => r.status)),
  );
  for (const s of statuses) note('GET /v1/me flood', s);
  // prom-client's GC histogram gets its series from a collection actually happening, which a short
  // run may not cause (seen on Node 26): one forced collection, then a turn for its observer.
  collectGarbage();
  await new Promise((r) => setTimeout(r, 50));
  return seen;
}

function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

/** Checks a round of traffic did what it is for: otherwise a missing metric would be the traffic's fault. */
export function expectTrafficCoverage(seen: Map<string, number>): void {
  for (const expected of [
    'POST /v1/notes 201',
    'GET /v1/notes/:id 200',
    'GET /v1/notes 200',
    'PATCH /v1/notes/:id 200',
    'POST /v1/api-keys 201',
    'GET /v1/api-keys 200',
    'DELETE /v1/api-keys/:id 204',
    'POST /v1/auth/token 200',
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
