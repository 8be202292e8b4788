// Owns the data every scenario reads: items created through the API, the requests, and the control's bodies.
import type { ControlRoute } from '../control-server.ts';
import type { BenchEnv } from './environment.ts';
import type { LoadRequest } from './load.ts';

/** Enough for a full first page of GET /v1/items?limit=20. */
const ITEM_COUNT = 25;

export const CREATE_BODY = JSON.stringify({
  name: 'bench item',
  description: 'created by the benchmark',
  tags: ['bench', 'load'],
});

export interface Fixtures {
  itemId: string;
  requests: {
    health: LoadRequest;
    itemJwt: LoadRequest;
    itemApiKey: LoadRequest;
    itemUncached: LoadRequest;
    list: LoadRequest;
    listUncached: LoadRequest;
    create: LoadRequest;
    me: LoadRequest;
  };
  /** The service's real answers, for the control to serve verbatim. */
  controlRoutes: ControlRoute[];
}

/** One request outside the load generator (set-up and checks). */
export async function sendRequest(
  baseUrl: string,
  request: LoadRequest,
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(baseUrl + request.path, {
    method: request.method,
    headers: request.headers ?? {},
    ...(request.body !== undefined ? { body: request.body } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** Creates the items (with the API key, as a client would) and captures every body the control serves. */
export async function createFixtures(baseUrl: string, env: BenchEnv): Promise<Fixtures> {
  const jwt = { authorization: `Bearer ${env.jwt}` };
  const apiKey = { authorization: `Bearer ${env.apiKey}` };
  const json = { 'content-type': 'application/json' };

  let created: { status: number; body: string } | undefined;
  for (let i = 0; i < ITEM_COUNT; i++) {
    const res = await sendRequest(baseUrl, {
      method: 'POST',
      path: '/v1/items',
      headers: { ...apiKey, ...json },
      body: CREATE_BODY,
    });
    if (res.status !== 201) throw new Error(`creating an item answered ${res.status}: ${res.body}`);
    created ??= res;
  }
  const itemId = (JSON.parse((created as { body: string }).body) as { id: string }).id;

  const requests: Fixtures['requests'] = {
    health: { method: 'GET', path: '/health' },
    itemJwt: { method: 'GET', path: `/v1/items/${itemId}`, headers: jwt },
    itemApiKey: { method: 'GET', path: `/v1/items/${itemId}`, headers: apiKey },
    itemUncached: {
      method: 'GET',
      path: `/v1/items/${itemId}`,
      headers: { ...jwt, 'cache-control': 'no-cache' },
    },
    list: { method: 'GET', path: '/v1/items?limit=20', headers: jwt },
    listUncached: {
      method: 'GET',
      path: '/v1/items?limit=20',
      headers: { ...jwt, 'cache-control': 'no-cache' },
    },
    create: { method: 'POST', path: '/v1/items', headers: { ...jwt, ...json }, body: CREATE_BODY },
    me: { method: 'GET', path: '/v1/me', headers: jwt },
  };

  const capture = async (request: LoadRequest, url: string): Promise<ControlRoute> => {
    const res = await sendRequest(baseUrl, request);
    if (res.status !== 200)
      throw new Error(`${request.method} ${request.path} answered ${res.status}: ${res.body}`);
    return { method: request.method as 'GET', url, status: 200, body: res.body };
  };
  const controlRoutes: ControlRoute[] = [
    await capture(requests.health, '/health'),
    await capture(requests.itemJwt, '/v1/items/:id'),
    await capture(requests.list, '/v1/items'),
    await capture(requests.me, '/v1/me'),
    { method: 'POST', url: '/v1/items', status: 201, body: (created as { body: string }).body },
  ];
  return { itemId, requests, controlRoutes };
}
