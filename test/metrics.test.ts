import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../src/plugins/metrics.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';

describe('metrics', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp({
      extend: (app) => {
        app.get('/test/items/:id', async () => ({ ok: true }));
      },
    });
  });
  afterAll(() => t.close());

  it('when routes are hit, then requests are labelled by route pattern, never the raw URL', async () => {
    await request(t.app.server).get('/test/items/123');
    await request(t.app.server).get('/test/items/456');
    await request(t.app.server).get('/random/scanner/path-1');
    await request(t.app.server).get('/random/scanner/path-2');
    const text = (await request(t.app.server).get('/metrics')).text;
    expect(text).toContain('http_requests_total{method="GET",route="/test/items/:id",status_code="200"} 2');
    expect(text).toContain('http_requests_total{method="GET",route="unmatched",status_code="404"} 2');
    expect(text).not.toMatch(/route="[^"]*(123|456|scanner)/);
    expect(text).toMatch(
      /http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/test\/items\/:id",status_code="200"\}/,
    );
  });

  it('when a route is hit, then its histogram has cumulative buckets ending in +Inf = _count, and a _sum', async () => {
    for (let i = 0; i < 3; i++) await request(t.app.server).get('/test/items/789');
    await request(t.app.server).post('/test/items/789'); // no POST route: counted as unmatched
    const text = (await request(t.app.server).get('/metrics')).text;
    const series = 'method="GET",route="/test/items/:id",status_code="200"';
    const count = Number(
      new RegExp(`http_request_duration_seconds_count\\{${series}\\} (\\d+)`).exec(text)?.[1],
    );
    const buckets = [
      ...text.matchAll(
        new RegExp(`http_request_duration_seconds_bucket\\{le="([^"]+)",${series}\\} (\\d+)`, 'g'),
      ),
    ];
    expect(buckets.map((m) => m[1])).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '+Inf',
    ]);
    const values = buckets.map((m) => Number(m[2]));
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(values.at(-1)).toBe(count);
    expect(count).toBeGreaterThanOrEqual(3);
    expect(text).toContain(`http_requests_total{${series}} ${count}`);
    expect(text).toMatch(new RegExp(`http_request_duration_seconds_sum\\{${series}\\} \\d`));
    expect(text).toMatch(/http_requests_total\{method="POST",route="unmatched",status_code="40\d"\} 1/);
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toContain('# TYPE http_requests_total counter');
  });

  it('when the registry is reset, then the HTTP series restart from zero and keep counting', async () => {
    await request(t.app.server).get('/test/items/1');
    for (const name of ['http_requests_total', 'http_request_duration_seconds'])
      t.app.metrics.registry.getSingleMetric(name)?.reset(); // what registry.resetMetrics() calls
    await request(t.app.server).get('/test/items/2');
    const text = (await request(t.app.server).get('/metrics')).text;
    expect(text).toContain('http_requests_total{method="GET",route="/test/items/:id",status_code="200"} 1');
    expect(text).toMatch(
      /http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="\/test\/items\/:id",status_code="200"\} 1/,
    );
  });

  it('when scraped, then process, pool, Redis, in-flight and build info metrics are exported', async () => {
    await request(t.app.server).get('/ready');
    const res = await request(t.app.server).get('/metrics');
    expect(res.status).toBe(200);
    // Without tracing: the Prometheus text format, no exemplars (OpenMetrics only when tracing is on).
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(res.text).not.toContain('# EOF');
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_gc_duration_seconds',
      'http_requests_in_flight',
      'pg_pool_max_connections 10',
      'pg_pool_errors_total',
      'redis_up 1',
    ]) {
      expect(res.text).toContain(name);
    }
    expect(res.text).toMatch(/pg_pool_connections\{state="total"\} \d+/);
    expect(res.text).toMatch(/pg_pool_connections\{state="idle"\} \d+/);
    expect(res.text).toMatch(/pg_pool_connections\{state="waiting"\} 0/);
    expect(res.text).toMatch(/app_build_info\{version="[^"]+",node_version="v\d+[^"]*",service="api"\} 1/);
  });

  it('when /metrics is scraped, then the scrape itself is not counted', async () => {
    await request(t.app.server).get('/metrics');
    const text = (await request(t.app.server).get('/metrics')).text;
    expect(text).not.toContain('route="/metrics"');
  });

  it('when METRICS_PORT moves metrics to their own listener, then it serves /metrics only', async () => {
    const server = await startMetricsServer(t.app.metrics.registry, '127.0.0.1', 0);
    try {
      const { port } = server.address() as AddressInfo;
      const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('http_requests_total');
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(404);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('metrics on a separate port', () => {
  it('when METRICS_PORT is set, then the main listener does not serve /metrics', async () => {
    const t = await buildTestApp({ redis: false, env: { METRICS_PORT: '9464' } });
    try {
      expect((await request(t.app.server).get('/metrics')).status).toBe(404);
    } finally {
      await t.close();
    }
  });
});
