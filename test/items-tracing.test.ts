// Tracing of what only the example resource turns on (its cached read): the cache lookup on the request
// span. rm:resource removes it with items; test/tracing.test.ts covers tracing itself on routes every fork keeps.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { createTestDatabase, type TestDatabase } from './helpers/app.ts';
import { signToken } from './helpers/auth.ts';
import { TEST_REDIS_URL } from './helpers/env.ts';
import { type ServerProcess, startServer } from './helpers/process.ts';
import {
  hex,
  type Receiver,
  startReceiver,
  traceparent,
  untracedServerEnv,
} from './tracing/otlp-receiver.ts';

describe('OpenTelemetry tracing of the items resource', () => {
  let db: TestDatabase;
  let receiver: Receiver;
  let server: ServerProcess;
  let token: string;

  const call = (path: string, traceId: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${server.port}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        traceparent: traceparent(traceId, true),
      },
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    receiver = await startReceiver();
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: db.url });
    token = signToken({ config } as FastifyInstance, {
      sub: `trace-${hex(4)}`,
      scope: 'items:read items:write',
    });
    server = await startServer({
      ...untracedServerEnv(db.url, TEST_REDIS_URL),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    await server.waitForLog('ready');
  });
  afterAll(async () => {
    await server?.stop();
    await receiver.close();
    await db.drop();
  });

  it('when an item is read twice, then the request spans record the cache miss, then the hit', async () => {
    const created = await call('/v1/items', hex(16), {
      method: 'POST',
      body: JSON.stringify({ name: 'traced' }),
    });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    const results: string[] = [];
    for (const _ of [1, 2]) {
      const traceId = hex(16);
      const read = await call(`/v1/items/${id}`, traceId);
      expect(read.status).toBe(200);
      const span = await receiver.requestSpan(traceId);
      expect(span.name).toBe('GET /v1/items/:id');
      results.push(String(span.attributes['app.cache.result']));
    }
    expect(results).toEqual(['miss', 'hit']);
  });
});
