// Owns driving buildah and podman for test/image: the tool check, the stand-in base, the real build, containers, cleanup.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const readRepo = (path: string) => readFileSync(join(ROOT, path), 'utf8');

const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;

/**
 * crun (Debian's podman default) refuses a host whose cgroup v2 hierarchy holds a controller while
 * the others are v1 ("hybrid"), as on these machines; runc runs there, so it is used when installed.
 * default_ulimits = []: podman's default rlimits cannot be set here (not permitted).
 */
function containersConf(): string {
  return `[containers]\ndefault_ulimits = []\n${has('runc') ? '[engine]\nruntime = "runc"\n' : ''}`;
}

/** Why the image tests cannot run on this machine, or null. */
export function unavailableReason(): string | null {
  const missing = ['buildah', 'podman', 'mmdebstrap'].filter((t) => !has(t));
  if (missing.length > 0)
    return `${missing.join(', ')} not installed: \`apt-get install buildah podman mmdebstrap runc\` (.ci/run does)`;
  const uid = process.getuid?.();
  if (uid !== 0)
    return `buildah, podman and mmdebstrap need root here (rootful storage, mmdebstrap root mode); uid is ${uid}`;
  const dir = mkdtempSync(join(tmpdir(), 'image-probe-'));
  try {
    writeFileSync(join(dir, 'containers.conf'), containersConf());
    const env = { ...process.env, CONTAINERS_CONF: join(dir, 'containers.conf') };
    for (const tool of ['buildah', 'podman']) {
      const r = spawnSync(tool, ['info'], { env, encoding: 'utf8', timeout: 30_000 });
      if (r.status !== 0)
        return `${tool} cannot run: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]}`;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return null;
}

/** The description suffix for describe.skipIf, printed so a skip is never silent. */
export function skipNote(reason: string | null): string {
  if (reason === null) return '';
  console.warn(`SKIPPED: ${reason}`);
  return ` (SKIPPED: ${reason})`;
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Per test file: its own containers.conf, temp dir, and every container and image it made (removed by close). */
export class Session {
  readonly dir: string;
  readonly id = randomBytes(4).toString('hex');
  readonly env: NodeJS.ProcessEnv;
  private readonly containers = new Set<string>();
  private readonly images = new Set<string>();

  readonly label: string;

  constructor(label: string) {
    this.label = label;
    this.dir = mkdtempSync(join(tmpdir(), `image-test-${label}-`));
    writeFileSync(join(this.dir, 'containers.conf'), containersConf());
    this.env = { ...process.env, CONTAINERS_CONF: join(this.dir, 'containers.conf') };
  }

  /** Runs a command to its end; throws with its output on a non-zero exit unless allowFail. */
  run(
    file: string,
    args: string[],
    options: { allowFail?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<Result> {
    const { allowFail = false, timeoutMs = 120_000 } = options;
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, {
        cwd: ROOT,
        env: options.env ?? this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString('utf8');
      });
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString('utf8');
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        if (code !== 0 && !allowFail)
          reject(
            new Error(
              `${file} ${args.join(' ')} exited ${code}\n${stderr.slice(-3000)}\n${stdout.slice(-2000)}`,
            ),
          );
        else resolve({ code, stdout, stderr });
      });
    });
  }

  podman(args: string[], options: { allowFail?: boolean; timeoutMs?: number } = {}) {
    return this.run('podman', args, options);
  }

  /** A unique name, removed by close(). */
  containerName(role: string): string {
    const name = `api-image-test-${this.id}-${role}`;
    this.containers.add(name);
    return name;
  }

  /** Builds (or finds cached) the stand-in for the Dockerfile's FROM image; returns the script's own line and the time taken. */
  async ensureBase(): Promise<{ ms: number; line: string }> {
    const started = performance.now();
    const { stdout } = await this.run('bash', ['scripts/image-base.sh', 'docker/Dockerfile'], {
      timeoutMs: 600_000,
    });
    return { ms: performance.now() - started, line: stdout.trim().split('\n').at(-1) ?? '' };
  }

  /**
   * docker/Dockerfile built by buildah with CI's build args, tagged uniquely. No --layers: nothing but
   * the tagged image is kept (close() removes it); only npm's cache mount persists between builds.
   */
  async build(): Promise<{ image: string; ms: number; args: string[] }> {
    const image = `localhost/api-image-test-${this.label}:${this.id}`;
    this.images.add(image);
    const buildArgs = ciBuildArgs(await gitRevision(this));
    const ca = npmCaFile();
    const args = [
      'bud',
      '--format',
      'docker',
      '--pull=never',
      '--network',
      'host',
      '-f',
      'docker/Dockerfile',
      ...buildArgs.flatMap((a) => ['--build-arg', a]),
      ...(ca ? ['--secret', `id=npmca,src=${ca}`] : []),
      '-t',
      image,
      '.',
    ];
    const started = performance.now();
    await this.run('buildah', args, { timeoutMs: 900_000 });
    return { image, ms: performance.now() - started, args: buildArgs };
  }

  /** A folder of secret files as Kubernetes mounts a Secret: root-owned, group 1000 (fsGroup), mode 0440. */
  secretsDir(name: string, files: Record<string, string>, mode = 0o440): string {
    const dir = join(this.dir, name);
    mkdirSync(dir);
    for (const [file, value] of Object.entries(files)) {
      const path = join(dir, file);
      writeFileSync(path, value);
      chownSync(path, 0, 1000);
      chmodSync(path, mode);
    }
    chmodSync(dir, 0o755);
    chmodSync(this.dir, 0o755);
    return dir;
  }

  async logs(container: string): Promise<{ lines: Record<string, unknown>[]; text: string }> {
    const { stdout, stderr } = await this.podman(['logs', container], { allowFail: true });
    const lines = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { lines, text: `${stdout}\n${stderr}` };
  }

  /** The container's state; exit code and health. */
  async inspect(container: string): Promise<{
    Status: string;
    Running: boolean;
    ExitCode: number;
    Health?: { Status: string; FailingStreak: number };
  }> {
    const { stdout } = await this.podman(['inspect', '--format', '{{json .State}}', container]);
    return JSON.parse(stdout);
  }

  /** Removes every container and image this session made, then its temp dir. */
  async close(): Promise<void> {
    for (const name of this.containers)
      await this.podman(['rm', '--force', '--ignore', '--time', '0', name], { allowFail: true });
    for (const image of this.images) await this.podman(['rmi', '--force', image], { allowFail: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The commit CI builds (`github.sha` there). */
async function gitRevision(session: Session): Promise<string> {
  const r = await session.run('git', ['rev-parse', 'HEAD'], { allowFail: true });
  return r.code === 0 ? r.stdout.trim() : 'unknown';
}

/** The build args of CI's image job (.github/workflows/ci.yml), `${{ github.sha }}` being this commit. */
export function ciBuildArgs(revision: string): string[] {
  const workflow = parse(readRepo('.github/workflows/ci.yml')) as {
    jobs: Record<string, { steps: { uses?: string; with?: Record<string, string> }[] }>;
  };
  const step = Object.values(workflow.jobs)
    .flatMap((j) => j.steps)
    .find((s) => s.uses?.startsWith('docker/build-push-action') && s.with?.file === 'docker/Dockerfile');
  if (!step?.with?.['build-args'])
    throw new Error('no docker/build-push-action step with build-args in ci.yml');
  return step.with['build-args']
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => l.replace(/\$\{\{\s*github\.sha\s*\}\}/g, revision));
}

/** The CA bundle the host's npm trusts (the registry is reached through a proxy only the host trusts). */
function npmCaFile(): string | undefined {
  const r = spawnSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8' });
  const fromNpm = r.status === 0 ? r.stdout.trim() : '';
  for (const candidate of [fromNpm, process.env.NODE_EXTRA_CA_CERTS, process.env.SSL_CERT_FILE])
    if (candidate && candidate !== 'null' && candidate !== 'undefined') return candidate;
  return undefined;
}

/** GET with a deadline; a network error is a status of 0. */
export async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
