// A real Redis Cluster for tests: three masters and three replicas on loopback ports, made with
// `redis-cli --cluster create`, in a temporary folder removed by stop().
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { findTool } from '../monitoring/support/tools.ts';

const run = promisify(execFile);

/** Why a cluster cannot be started here (a tool missing), or undefined when it can. */
export const REDIS_CLUSTER_UNAVAILABLE = ((missing: string[]) =>
  missing.length > 0 ? `${missing.join(' and ')} not installed (apt-get install redis-server)` : undefined)(
  ['redis-server', 'redis-cli'].filter((tool) => findTool(tool) === undefined),
);

export interface RedisClusterNode {
  port: number;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
}

export interface RedisCluster {
  /** Seed nodes as REDIS_CLUSTER_NODES takes them. */
  nodes: string;
  /** The redis-server processes, for reading their CPU time. */
  pids: number[];
  /** The node that serves `key`'s slot as master now. */
  masterOf(key: string): Promise<RedisClusterNode>;
  /** Every key matching a pattern on every master, with its time to live in ms. */
  keys(pattern: string): Promise<{ key: string; pttl: number }[]>;
  /** Deletes every key under a prefix on every master. */
  deletePrefix(prefix: string): Promise<void>;
  /** Environment for an instance of the service on this cluster (REDIS_URL unset). */
  env(): Record<string, string | undefined>;
  stop(): Promise<void>;
}

/** Also the cluster bus port (+10000) must be free. */
async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function freeClusterPorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let candidate = 20000 + Math.floor(Math.random() * 20000); ports.length < count; candidate++) {
    if ((await isFree(candidate)) && (await isFree(candidate + 10000))) ports.push(candidate);
  }
  return ports;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`redis cluster: timed out waiting for ${what}`);
}

const cli = (port: number, ...args: string[]) =>
  run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]).then((r) => r.stdout.trim());

/**
 * Starts three masters, each with `replicas` replicas (1 by default), node timeout 1 s so that a
 * killed master fails over in about 2 s, and joins them. bench/topologies.ts uses it too.
 */
export async function startRedisCluster(options: { replicas?: number } = {}): Promise<RedisCluster> {
  const replicas = options.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
  const ports = await freeClusterPorts(3 * (1 + replicas));
  const children = new Map<number, ChildProcess>();
  for (const port of ports) {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '1000',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        // Replicas sync at once instead of after 5 s: a replica that never synced refuses to fail over.
        '--repl-diskless-sync-delay',
        '0',
      ],
      { stdio: 'ignore' },
    );
    children.set(port, child);
  }
  // A run cut short (a timeout, Ctrl-C) must not leave six servers behind.
  const killAll = () => {
    for (const child of children.values()) child.kill('SIGKILL');
  };
  process.once('exit', killAll);
  const stop = async () => {
    process.off('exit', killAll);
    await Promise.all(
      [...children.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports)
      await waitFor(async () => (await cli(port, 'ping')) === 'PONG', 10_000, `:${port}`);
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ]);
    // Every node must agree before a client can rely on the slot map.
    for (const port of ports)
      await waitFor(
        async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'),
        20_000,
        `cluster_state:ok on :${port}`,
      );
    // Only a replica that has synced with its master may take over from it.
    for (const port of ports)
      await waitFor(
        async () => {
          const info = await cli(port, 'info', 'replication');
          return info.includes('role:master') || info.includes('master_link_status:up');
        },
        20_000,
        `replica :${port} in sync`,
      );
  } catch (err) {
    await stop();
    throw err;
  }

  const seeds = ports.map((port) => ({ host: '127.0.0.1', port }));
  /** A client whose node list is known (connect resolves once the slot map is loaded). */
  const connected = async () => {
    const c = new Cluster(seeds, { lazyConnect: true, slotsRefreshTimeout: 2000 });
    await c.connect();
    return c;
  };

  const alive = () =>
    ports.filter((port) => children.get(port)?.exitCode === null && !children.get(port)?.killed);
  /** Masters as a live node sees them now (a killed master is flagged fail and loses its slots). */
  const liveMasters = async () => {
    const [first] = alive();
    if (first === undefined) return [];
    const lines = (await cli(first, 'cluster', 'nodes')).split('\n');
    return lines
      .filter((line) => / (myself,)?master /.test(line) && !line.includes('fail'))
      .map((line) => Number(/:(\d+)@/.exec(line)?.[1]))
      .filter((port) => alive().includes(port));
  };
  /** A plain client to one node that fails instead of waiting for a dead one. */
  const withNode = async <T>(port: number, fn: (node: Redis) => Promise<T>): Promise<T> => {
    const node = new Redis({ port, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 });
    node.on('error', () => {});
    try {
      return await fn(node);
    } finally {
      node.disconnect();
    }
  };

  return {
    nodes: seeds.map((s) => `${s.host}:${s.port}`).join(','),
    pids: [...children.values()].map((child) => child.pid as number),
    async masterOf(key) {
      const slot = Number(await cli(ports[0] as number, 'cluster', 'keyslot', key));
      const c = await connected();
      try {
        const slots = await c.cluster('SLOTS');
        const range = slots.find(([from, to]) => slot >= from && slot <= to);
        const port = range?.[2]?.[1];
        if (port === undefined) throw new Error(`no master serves slot ${slot}`);
        return {
          port,
          async kill() {
            const child = children.get(port);
            if (!child || child.exitCode !== null) return;
            const exited = new Promise((r) => child.once('exit', r));
            child.kill('SIGKILL');
            await exited;
          },
        };
      } finally {
        c.disconnect();
      }
    },
    env: () => ({
      REDIS_URL: undefined,
      REDIS_CLUSTER_NODES: seeds.map((s) => `${s.host}:${s.port}`).join(','),
    }),
    async keys(pattern) {
      const perMaster = await Promise.all(
        (await liveMasters()).map((port) =>
          withNode(port, async (node) => {
            const keys = await node.keys(pattern);
            return Promise.all(keys.map(async (key) => ({ key, pttl: await node.pttl(key) })));
          }),
        ),
      );
      return perMaster.flat();
    },
    async deletePrefix(prefix) {
      await Promise.all(
        (await liveMasters()).map((port) =>
          withNode(port, async (node) => {
            // One key per DEL: keys of different slots cannot share a command.
            for (const key of await node.keys(`${prefix}*`)) await node.del(key);
          }),
        ),
      );
    },
    stop,
  };
}
