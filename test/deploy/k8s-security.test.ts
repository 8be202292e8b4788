// Security and availability invariants, for every container in every rendered overlay: what the
// restricted Pod Security profile demands and more, the NetworkPolicy's exact openings, the
// Deployment's rollout and spread.
import { describe, expect, it } from 'vitest';
import { parseDockerfile } from './support/dockerfile.ts';
import {
  id,
  type K8sObject,
  KUBECTL_MISSING,
  kubectlAvailable,
  OVERLAYS,
  one,
  type PodOwner,
  podOwners,
  render,
} from './support/k8s.ts';
import { readText } from './support/repo.ts';

if (!kubectlAvailable) console.warn(`test/deploy/k8s-security.test.ts skipped: ${KUBECTL_MISSING}`);

// biome-ignore lint/suspicious/noExplicitAny: rendered specs are walked generically.
type Any = any;

const QUANTITY = /^(\d+(\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/;
function quantity(value: string | number): number {
  const m = QUANTITY.exec(String(value));
  if (m === null) throw new Error(`not a quantity: ${value}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
  };
  return Number(m[1]) * (m[3] ? (factor[m[3]] as number) : 1);
}

/** Every violation of the pod and container invariants, as readable strings (empty when compliant). */
function podViolations(owner: PodOwner, serviceAccounts: K8sObject[]): string[] {
  const spec = owner.template.spec;
  const pod = spec.securityContext ?? {};
  const problems: string[] = [];
  const where = id(owner.owner);
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) problems.push(`${where}: shares a host namespace`);
  for (const v of spec.volumes ?? []) if (v.hostPath) problems.push(`${where}: hostPath volume ${v.name}`);
  const sa = serviceAccounts.find((s) => s.metadata.name === (spec.serviceAccountName ?? 'default'));
  const automount = spec.automountServiceAccountToken ?? sa?.automountServiceAccountToken ?? true;
  if (automount !== false) problems.push(`${where}: mounts a service account token`);
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const sc = c.securityContext ?? {};
    const at = `${where}/${c.name}`;
    if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${at}: runAsNonRoot is not true`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) problems.push(`${at}: runs as uid 0`);
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation is not false`);
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem is not true`);
    if (sc.privileged === true) problems.push(`${at}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) problems.push(`${at}: capabilities do not drop ALL`);
    if ((sc.capabilities?.add ?? []).length > 0) problems.push(`${at}: adds capabilities`);
    const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
      problems.push(`${at}: seccomp is not RuntimeDefault`);
    for (const kind of ['requests', 'limits'] as const)
      for (const resource of ['cpu', 'memory'])
        if (c.resources?.[kind]?.[resource] === undefined) problems.push(`${at}: no ${resource} ${kind}`);
    for (const resource of ['cpu', 'memory']) {
      const req = c.resources?.requests?.[resource];
      const lim = c.resources?.limits?.[resource];
      if (req !== undefined && lim !== undefined && quantity(req) > quantity(lim))
        problems.push(`${at}: ${resource} request exceeds its limit`);
    }
  }
  return problems;
}

const imageUid = (() => {
  const stages = parseDockerfile(readText('docker/Dockerfile')).stages;
  const user =
    stages
      .at(-1)
      ?.instructions.filter((i) => i.keyword === 'USER')
      .at(-1)?.args ?? '';
  return Number(user.split(':')[0]);
})();

const byPort = (rules: Any[]) =>
  rules
    .flatMap((r: Any) => (r.ports ?? [{ port: '*' }]).map((p: Any) => `${p.protocol ?? 'TCP'}/${p.port}`))
    .sort();

describe.skipIf(!kubectlAvailable)('security invariants in the rendered overlays (needs kubectl)', () => {
  describe.each(OVERLAYS)('k8s/%s', (dir) => {
    const objects = kubectlAvailable ? render(dir) : [];
    const owners = podOwners(objects);
    const server = () =>
      owners.find((o) => o.owner.kind === 'Deployment' && o.owner.metadata.name === 'api') as PodOwner;

    it('when any pod runs, then every container is non-root, read-only, unprivileged, capability-free, seccomp-confined and sized', () => {
      const serviceAccounts = objects.filter((o) => o.kind === 'ServiceAccount');
      expect(owners.length).toBeGreaterThan(0);
      expect(owners.flatMap((o) => podViolations(o, serviceAccounts))).toEqual([]);
    });

    it('when the namespace admits pods, then Pod Security Admission enforces the restricted profile', () => {
      const ns = one(objects, 'Namespace', 'api');
      expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
      expect(one(objects, 'ServiceAccount', 'api').automountServiceAccountToken).toBe(false);
    });

    it('when the API pods run, then they run as the image user, write only to an emptyDir /tmp and read secrets as group-readable files', () => {
      for (const owner of owners.filter(
        (o) => o.template.metadata.labels['app.kubernetes.io/name'] === 'api',
      )) {
        const spec = owner.template.spec;
        expect(spec.securityContext.runAsUser, id(owner.owner)).toBe(imageUid);
        expect(spec.enableServiceLinks, `${id(owner.owner)}: service links inject variables`).toBe(false);
        const volumes = new Map(spec.volumes.map((v: Any) => [v.name, v]));
        for (const c of spec.containers) {
          const tmp = c.volumeMounts.find((m: Any) => m.mountPath === '/tmp');
          expect((volumes.get(tmp?.name) as Any)?.emptyDir, `${id(owner.owner)}: /tmp`).toBeDefined();
          for (const m of c.volumeMounts) {
            const secret = (volumes.get(m.name) as Any)?.secret;
            if (secret === undefined) continue;
            expect(m.readOnly).toBe(true);
            const mode = secret.defaultMode ?? 0o644;
            // Readable by the pod's group (fsGroup), never by others.
            expect(spec.securityContext.fsGroup).toBeDefined();
            expect(mode & 0o040, `${secret.secretName} mode ${mode.toString(8)}`).toBe(0o040);
            expect(mode & 0o007, `${secret.secretName} mode ${mode.toString(8)}`).toBe(0);
          }
        }
      }
    });

    it('when traffic flows, then the NetworkPolicies deny by default and open exactly the documented paths', () => {
      const deny = one(objects, 'NetworkPolicy', 'default-deny');
      expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });

      const api = one(objects, 'NetworkPolicy', 'api-server');
      expect(api.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      const ingress = api.spec.ingress.map((r: Any) => ({
        from: r.from.map((f: Any) => f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']),
        ports: byPort([r]),
      }));
      expect(ingress).toEqual([
        { from: ['ingress-nginx'], ports: ['TCP/http'] },
        { from: ['monitoring'], ports: ['TCP/metrics'] },
      ]);
      for (const rule of api.spec.ingress)
        for (const peer of rule.from) expect(Object.keys(peer)).toEqual(['namespaceSelector']);
      // The metrics port is what METRICS_PORT serves (9464), not the public one.
      const c = server().template.spec.containers[0];
      expect(c.ports.find((p: Any) => p.name === 'metrics').containerPort).toBe(9464);
      // Production reaches PostgreSQL through PgBouncer (6432, DATABASE_POOL_MODE=transaction).
      const pooler = dir === 'overlays/production' ? ['TCP/6432'] : [];
      expect(byPort(api.spec.egress)).toEqual(
        ['TCP/4318', 'TCP/53', 'TCP/5432', ...pooler, 'TCP/6379', 'UDP/53'].sort(),
      );
      // OTLP/HTTP traces go to the collector's namespace only, not to any address.
      const otlp = api.spec.egress.find((r: Any) => r.ports.some((p: Any) => p.port === 4318));
      expect(otlp.to).toEqual([
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } },
      ]);
      const dns = api.spec.egress.find((r: Any) => r.ports.some((p: Any) => p.port === 53));
      expect(dns.to).toEqual([
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
          podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        },
      ]);

      const migrate = one(objects, 'NetworkPolicy', 'api-migrate');
      expect(migrate.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(migrate.spec.ingress).toBeUndefined();
      expect(byPort(migrate.spec.egress)).toEqual(['TCP/53', 'TCP/5432', 'UDP/53']);
    });

    it('when the Deployment rolls out, then no ready pod is removed first and pods spread over nodes and zones', () => {
      const d = server();
      expect(d.owner.spec.strategy).toMatchObject({
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: 0 },
      });
      expect(d.owner.spec.strategy.rollingUpdate.maxSurge).not.toBe(0);
      const keys = d.template.spec.topologySpreadConstraints.map((t: Any) => t.topologyKey).sort();
      expect(keys).toEqual(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
      for (const t of d.template.spec.topologySpreadConstraints) expect(t.maxSkew).toBe(1);
      const probes = d.template.spec.containers[0];
      // Sane thresholds: startup allows a slow first start; liveness tolerates blips; readiness
      // outlasts the app's 1 s dependency check.
      expect(probes.startupProbe.periodSeconds * probes.startupProbe.failureThreshold).toBeGreaterThanOrEqual(
        30,
      );
      expect(probes.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(3);
      expect(probes.readinessProbe.timeoutSeconds).toBeGreaterThan(1);
      for (const p of [probes.startupProbe, probes.livenessProbe, probes.readinessProbe])
        expect(p.timeoutSeconds).toBeLessThan(p.periodSeconds + 1);
    });
  });

  it('when the overlays differ, then development runs one replica and production more replicas with stricter resources', () => {
    const replicas = (dir: string) => one(render(dir), 'Deployment', 'api').spec.replicas;
    const resources = (dir: string) =>
      one(render(dir), 'Deployment', 'api').spec.template.spec.containers[0].resources;
    expect(replicas('base')).toBe(3);
    expect(replicas('overlays/development')).toBe(1);
    expect(replicas('overlays/production')).toBeGreaterThan(replicas('base'));
    const base = resources('base');
    const prod = resources('overlays/production');
    expect(quantity(prod.requests.cpu)).toBeGreaterThan(quantity(base.requests.cpu));
    expect(quantity(prod.requests.memory)).toBeGreaterThan(quantity(base.requests.memory));
    // Memory requested up to its limit: the scheduler reserves what the pod may use.
    expect(quantity(prod.requests.memory)).toBe(quantity(prod.limits.memory));
    const hpa = one(render('overlays/production'), 'HorizontalPodAutoscaler', 'api').spec;
    expect(hpa.minReplicas).toBe(replicas('overlays/production'));
  });

  it('when a container breaks an invariant, then the check names it', () => {
    const owner = structuredClone(
      podOwners(render('base')).find((o) => o.owner.kind === 'Deployment') as PodOwner,
    );
    const c = owner.template.spec.containers[0];
    c.securityContext.readOnlyRootFilesystem = false;
    c.securityContext.capabilities = { drop: ['NET_RAW'], add: ['NET_ADMIN'] };
    delete c.resources.limits.memory;
    owner.template.spec.securityContext.runAsNonRoot = false;
    delete c.securityContext.runAsNonRoot;
    owner.template.spec.automountServiceAccountToken = undefined;
    expect(podViolations(owner, [])).toEqual([
      'Deployment/api: mounts a service account token',
      'Deployment/api/api: runAsNonRoot is not true',
      'Deployment/api/api: readOnlyRootFilesystem is not true',
      'Deployment/api/api: capabilities do not drop ALL',
      'Deployment/api/api: adds capabilities',
      'Deployment/api/api: no memory limits',
    ]);
  });
});
