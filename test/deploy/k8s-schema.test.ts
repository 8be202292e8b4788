// Every kustomize overlay renders, and every rendered object is valid for the Kubernetes API and the
// CRDs it uses (kubernetes-models, @kubernetes-models/prometheus-operator and external-secrets).
import { describe, expect, it } from 'vitest';
import {
  id,
  type K8sObject,
  KUBECTL_MISSING,
  kubectlAvailable,
  OVERLAYS,
  ofKind,
  one,
  render,
  schemaErrors,
  unknownFields,
} from './support/k8s.ts';

if (!kubectlAvailable) console.warn(`test/deploy/k8s-schema.test.ts skipped: ${KUBECTL_MISSING}`);

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'ClusterSecretStore']);

describe.skipIf(!kubectlAvailable)('kubectl kustomize renders (needs kubectl)', () => {
  describe.each(OVERLAYS)('k8s/%s', (dir) => {
    it('when rendered with kubectl kustomize, then every object validates against its schema', () => {
      const objects = render(dir);
      expect(objects.length).toBeGreaterThan(0);
      const errors = objects.flatMap((o) => schemaErrors(o).map((e) => `${id(o)}: ${e}`));
      expect(errors).toEqual([]);
    });

    it('when rendered, then no object has a field its schema does not define (a typo would be dropped silently)', () => {
      const errors = render(dir).flatMap((o) => unknownFields(o).map((e) => `${id(o)}: ${e}`));
      expect(errors).toEqual([]);
    });

    it('when rendered, then every namespaced object lives in the api namespace and names are unique per kind', () => {
      const objects = render(dir);
      for (const o of objects)
        if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace, id(o)).toBeUndefined();
        else expect(o.metadata.namespace, id(o)).toBe('api');
      const ids = objects.map(id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(one(objects, 'Namespace', 'api')).toBeDefined();
    });
  });

  it('when the base is rendered, then it has every object the service needs', () => {
    const kinds = new Set(render('base').map((o) => o.kind));
    for (const kind of [
      'Namespace',
      'ServiceAccount',
      'ConfigMap',
      'Secret',
      'Deployment',
      'Service',
      'Ingress',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'NetworkPolicy',
      'Job',
      'ServiceMonitor',
      'PrometheusRule',
    ])
      expect(kinds, kind).toContain(kind);
  });

  it('when the development overlay is rendered, then it adds in-cluster PostgreSQL and Redis and drops what a bare kind cluster lacks', () => {
    const objects = render('overlays/development');
    expect(one(objects, 'StatefulSet', 'postgres')).toBeDefined();
    expect(one(objects, 'Service', 'postgres')).toBeDefined();
    expect(one(objects, 'Deployment', 'redis')).toBeDefined();
    expect(one(objects, 'Service', 'redis')).toBeDefined();
    // No metrics-server, Prometheus Operator or cert-manager needed on kind or minikube.
    for (const kind of ['HorizontalPodAutoscaler', 'ServiceMonitor', 'PrometheusRule'])
      expect(ofKind(objects, kind), kind).toEqual([]);
    const ingress = one(objects, 'Ingress', 'api');
    expect(ingress.spec.tls).toBeUndefined();
    expect(ingress.metadata.annotations?.['cert-manager.io/cluster-issuer']).toBeUndefined();
  });

  it('when the production overlay is rendered, then the placeholder Secret is replaced by an ExternalSecret', () => {
    const objects = render('overlays/production');
    expect(ofKind(objects, 'Secret')).toEqual([]);
    const external = one(objects, 'ExternalSecret', 'api-secrets');
    expect(external.spec.target.name).toBe('api-secrets');
    const ingress = one(objects, 'Ingress', 'api');
    expect(ingress.metadata.annotations?.['cert-manager.io/cluster-issuer']).toBeTruthy();
    expect(ingress.spec.tls[0].hosts).toEqual([ingress.spec.rules[0].host]);
  });

  describe('the checks themselves', () => {
    const deployment = () => structuredClone(one(render('base'), 'Deployment', 'api')) as K8sObject;

    it('when a field is misspelt, then the unknown-field check names it', () => {
      const d = deployment();
      d.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
      d.spec.template.spec.topologySpreadConstraint = [];
      expect(unknownFields(d)).toEqual([
        'spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: unknown field',
        'spec.template.spec.topologySpreadConstraint: unknown field',
      ]);
    });

    it('when a value has the wrong type or a required field is missing, then the schema check reports it', () => {
      const d = deployment();
      d.spec.replicas = '3';
      delete d.spec.template.spec.containers[0].name;
      const errors = schemaErrors(d).join('\n');
      expect(errors).toMatch(/replicas must be integer/);
      expect(errors).toMatch(/must have required property 'name'|required property name/);
    });

    it('when a kind has no known schema, then it is reported instead of passing unchecked', () => {
      const o = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'x' } } as K8sObject;
      expect(schemaErrors(o)[0]).toMatch(/no schema known/);
    });
  });
});
