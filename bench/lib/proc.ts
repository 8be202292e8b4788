// Owns what the bench reads from /proc: a process's RSS and CPU time, and the whole machine's busy time.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/<pid>/stat times (100 on every Linux we run on, but ask). */
const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** Resident set size in bytes, or undefined once the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * User + system CPU time of the whole process (all threads: GC helpers and libuv's pool included),
 * in milliseconds, at clock-tick resolution (10 ms): fine over runs of seconds.
 */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) / CLK_TCK) * 1000;
  } catch {
    return undefined;
  }
}

/**
 * CPU time of the process's main thread alone (the JavaScript thread: no GC helpers, no libuv pool),
 * in milliseconds, from the first field of /proc/<pid>/task/<pid>/schedstat (nanoseconds on CPU).
 */
export function mainThreadCpuMs(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ', 1)[0];
    return Number(first) / 1e6;
  } catch {
    return undefined;
  }
}

export interface MachineCpu {
  busy: number;
  total: number;
}

/** Cumulative jiffies of all cores from /proc/stat; busy excludes idle and iowait. */
export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy between two readings, in percent of one core (200 = both cores of two). */
export function busyPercentOfOneCore(before: MachineCpu, after: MachineCpu, cores: number): number {
  const total = after.total - before.total;
  return total > 0 ? ((after.busy - before.busy) / total) * 100 * cores : 0;
}

/** Processes that belong to the system under test without being the server: the shared Postgres and Redis. */
const INFRA_COMMANDS = new Set(['postgres', 'redis-server', 'pgbouncer']);

export interface CpuSnapshot {
  machine: MachineCpu;
  /** CPU ms of every postgres and redis-server process. */
  infraMs: number;
  /** CPU ms of the given pids (the bench's own servers). */
  ownMs: number;
  /** This process (the load generator). */
  self: NodeJS.CpuUsage;
  at: number;
}

/** One pass over /proc: whole machine, Postgres + Redis, our children, ourselves. */
export function cpuSnapshot(ownPids: ReadonlySet<number>): CpuSnapshot {
  let infraMs = 0;
  let ownMs = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const own = ownPids.has(pid);
    if (!own && !INFRA_COMMANDS.has(comm)) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = ((Number(fields[11]) + Number(fields[12])) / CLK_TCK) * 1000;
    if (own) ownMs += ms;
    else infraMs += ms;
  }
  return { machine: machineCpu(), infraMs, ownMs, self: process.cpuUsage(), at: performance.now() };
}

export interface CpuSplit {
  /** All cores busy, percent of one core. */
  machinePct: number;
  /** Postgres and Redis. */
  infraPct: number;
  /** The bench's servers. */
  ownPct: number;
  /** The load generator (this process). */
  selfPct: number;
  /** Everything else: another test suite, a build... Anything well above zero means a contended run. */
  externalPct: number;
}

export function cpuSplit(a: CpuSnapshot, b: CpuSnapshot, cores: number): CpuSplit {
  const wall = b.at - a.at;
  const pct = (ms: number) => (wall > 0 ? (ms / wall) * 100 : 0);
  const machinePct = busyPercentOfOneCore(a.machine, b.machine, cores);
  const selfPct = pct((b.self.user - a.self.user + b.self.system - a.self.system) / 1000);
  const infraPct = pct(b.infraMs - a.infraMs);
  const ownPct = pct(b.ownMs - a.ownMs);
  return {
    machinePct,
    infraPct,
    ownPct,
    selfPct,
    externalPct: Math.max(0, machinePct - infraPct - ownPct - selfPct),
  };
}
