// Owns turning a pod template of k8s/base (Deployment, Job) into the podman run flags that configure a container the same way.
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { ROOT, readRepo } from './containers.ts';

interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value: string }[];
  envFrom?: { configMapRef?: { name: string } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  resources?: { limits?: { cpu?: string; memory?: string } };
  securityContext?: SecurityContext;
  [key: string]: unknown;
}

interface PodSpec {
  terminationGracePeriodSeconds?: number;
  securityContext?: SecurityContext;
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string }; emptyDir?: { sizeLimit?: string } }[];
}

export interface PodmanRun {
  /** Flags for `podman run` (before the image). */
  flags: string[];
  /** What follows the image: the container's args (the image's ENTRYPOINT, tini, stays). */
  args: string[];
  /** terminationGracePeriodSeconds: how long `podman stop` waits before SIGKILL. */
  stopTimeoutSeconds: number;
  user: string;
}

/**
 * Not translated, on purpose: ports (the container shares the host's network, so PORT and
 * METRICS_PORT are set to free ports instead), probes (the test asks /health and /ready itself),
 * lifecycle.preStop (a sleep before SIGTERM; podman has no hook for it, and the app's own
 * SHUTDOWN_DELAY_MS covers the same window), imagePullPolicy and name.
 */
const NOT_TRANSLATED = new Set([
  'name',
  'image',
  'imagePullPolicy',
  'ports',
  'startupProbe',
  'livenessProbe',
  'readinessProbe',
  'lifecycle',
]);
const TRANSLATED = new Set(['args', 'env', 'envFrom', 'volumeMounts', 'resources', 'securityContext']);

/** Files behind a configMapGenerator of k8s/base/kustomization.yaml, by ConfigMap name. */
function generatedConfigMaps(manifest: string): Map<string, string> {
  const dir = dirname(manifest);
  const k = parse(readRepo(join(dir, 'kustomization.yaml'))) as {
    configMapGenerator?: { name: string; envs?: string[] }[];
  };
  const out = new Map<string, string>();
  for (const g of k.configMapGenerator ?? [])
    for (const env of g.envs ?? []) out.set(g.name, join(ROOT, dir, env));
  return out;
}

/** Kubernetes quantities as podman takes them: 256Mi -> 256m, 64Mi -> 64m, "1" -> 1. */
function memory(q: string): string {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unsupported memory quantity ${q}`);
  return m[2] === 'Gi' ? `${m[1]}g` : `${m[1]}m`;
}
function cpus(q: string): string {
  return q.endsWith('m') ? String(Number(q.slice(0, -1)) / 1000) : q;
}

/**
 * The podman flags for the first container of a manifest's pod template. `secrets` maps a secret
 * volume's secretName to a host folder holding its keys as files. Throws on any container field it
 * does not know, so a manifest change cannot silently escape the test.
 */
export function podmanRunFor(manifest: string, secrets: Record<string, string>): PodmanRun {
  const doc = parse(readRepo(manifest)) as { spec: { template: { spec: PodSpec } } };
  const pod = doc.spec.template.spec;
  const [container] = pod.containers;
  if (!container || pod.containers.length !== 1) throw new Error(`${manifest}: expected one container`);
  for (const key of Object.keys(container))
    if (!TRANSLATED.has(key) && !NOT_TRANSLATED.has(key))
      throw new Error(`${manifest}: container field ${key} is not translated to podman`);
  if (container.command) throw new Error(`${manifest}: command replaces the image's tini entrypoint`);

  const podSec = pod.securityContext ?? {};
  const sec = { ...podSec, ...container.securityContext };
  const uid = sec.runAsUser;
  const gid = sec.runAsGroup;
  if (uid === undefined || gid === undefined || uid === 0)
    throw new Error(`${manifest}: no non-root runAsUser/runAsGroup`);
  const flags = ['--user', `${uid}:${gid}`];
  if (podSec.fsGroup !== undefined) flags.push('--group-add', String(podSec.fsGroup));
  if (sec.readOnlyRootFilesystem) flags.push('--read-only');
  if (sec.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges');
  if (sec.privileged) flags.push('--privileged');
  for (const cap of sec.capabilities?.drop ?? []) flags.push('--cap-drop', cap);
  for (const cap of sec.capabilities?.add ?? []) flags.push('--cap-add', cap);
  // seccompProfile RuntimeDefault is podman's default profile.

  const configMaps = generatedConfigMaps(manifest);
  for (const from of container.envFrom ?? []) {
    const name = from.configMapRef?.name;
    const file = name ? configMaps.get(name) : undefined;
    if (!file) throw new Error(`${manifest}: envFrom ${JSON.stringify(from)} has no generated ConfigMap`);
    flags.push('--env-file', file);
  }
  for (const e of container.env ?? []) flags.push('--env', `${e.name}=${e.value}`);

  for (const m of container.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === m.name);
    if (volume?.secret) {
      const dir = secrets[volume.secret.secretName];
      if (!dir) throw new Error(`${manifest}: no folder given for secret ${volume.secret.secretName}`);
      flags.push('--volume', `${dir}:${m.mountPath}:${m.readOnly ? 'ro' : 'rw'}`);
    } else if (volume?.emptyDir) {
      const size = volume.emptyDir.sizeLimit ? `:size=${memory(volume.emptyDir.sizeLimit)}` : '';
      flags.push('--tmpfs', `${m.mountPath}${size}`);
    } else throw new Error(`${manifest}: volume ${m.name} is neither a secret nor an emptyDir`);
  }

  const limits = container.resources?.limits ?? {};
  if (limits.memory) flags.push('--memory', memory(limits.memory));
  if (limits.cpu) flags.push('--cpus', cpus(limits.cpu));

  return {
    flags,
    args: container.args ?? [],
    stopTimeoutSeconds: pod.terminationGracePeriodSeconds ?? 30,
    user: `${uid}:${gid}`,
  };
}
