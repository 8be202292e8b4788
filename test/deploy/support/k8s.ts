// Owns rendering the kustomize overlays with kubectl and checking rendered objects against the
// Kubernetes (and CRD) schemas shipped by kubernetes-models, plus a strict unknown-field check.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ExternalSecret } from '@kubernetes-models/external-secrets/external-secrets.io/v1';
import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ConfigMap,
  Namespace,
  PersistentVolumeClaim,
  Secret,
  Service,
  ServiceAccount,
} from 'kubernetes-models/v1';
import { ROOT, readYamlDocuments, repoPath } from './repo.ts';

export const OVERLAYS = ['base', 'overlays/development', 'overlays/production'] as const;
export type Overlay = (typeof OVERLAYS)[number];

// ---- kubectl --------------------------------------------------------------------------------

export const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const probe = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' });
export const kubectlAvailable = probe.error === undefined && probe.status === 0;
export const KUBECTL_MISSING =
  'kubectl not found: these tests render the kustomize overlays with `kubectl kustomize`. Install kubectl ' +
  '(https://kubernetes.io/docs/tasks/tools/ , or `apt-get install kubectl` from the Kubernetes apt ' +
  'repository), or point KUBECTL at it.';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked generically.
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  [key: string]: any;
}

const renders = new Map<string, K8sObject[]>();

/** `kubectl kustomize k8s/<dir>`, parsed; throws with kubectl's message when it fails. */
export function render(dir: string): K8sObject[] {
  const cached = renders.get(dir);
  if (cached) return cached;
  const result = spawnSync(KUBECTL, ['kustomize', repoPath('k8s', dir)], { encoding: 'utf8', cwd: ROOT });
  if (result.status !== 0) throw new Error(`kubectl kustomize k8s/${dir} failed:\n${result.stderr}`);
  const objects = readYamlDocuments(result.stdout) as K8sObject[];
  renders.set(dir, objects);
  return objects;
}

export const ofKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);

export function one(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in the render`);
  return found;
}

export const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

// ---- schemas --------------------------------------------------------------------------------

interface ModelClass {
  new (data: never): { validate(): void };
}

/** Every kind the manifests may contain, with its model (its module path for the strict check). */
const MODELS: Record<string, { model: ModelClass; types: string }> = {
  'v1/Namespace': { model: Namespace, types: 'kubernetes-models/v1/Namespace' },
  'v1/ServiceAccount': { model: ServiceAccount, types: 'kubernetes-models/v1/ServiceAccount' },
  'v1/ConfigMap': { model: ConfigMap, types: 'kubernetes-models/v1/ConfigMap' },
  'v1/Secret': { model: Secret, types: 'kubernetes-models/v1/Secret' },
  'v1/Service': { model: Service, types: 'kubernetes-models/v1/Service' },
  'apps/v1/Deployment': { model: Deployment, types: 'kubernetes-models/apps/v1/Deployment' },
  'apps/v1/StatefulSet': { model: StatefulSet, types: 'kubernetes-models/apps/v1/StatefulSet' },
  'batch/v1/Job': { model: Job, types: 'kubernetes-models/batch/v1/Job' },
  'batch/v1/CronJob': { model: CronJob, types: 'kubernetes-models/batch/v1/CronJob' },
  'v1/PersistentVolumeClaim': {
    model: PersistentVolumeClaim,
    types: 'kubernetes-models/v1/PersistentVolumeClaim',
  },
  'networking.k8s.io/v1/Ingress': { model: Ingress, types: 'kubernetes-models/networking.k8s.io/v1/Ingress' },
  'networking.k8s.io/v1/NetworkPolicy': {
    model: NetworkPolicy,
    types: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
  },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    model: HorizontalPodAutoscaler,
    types: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    types: 'kubernetes-models/policy/v1/PodDisruptionBudget',
  },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: ServiceMonitor,
    types: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
  },
  'monitoring.coreos.com/v1/PrometheusRule': {
    model: PrometheusRule,
    types: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
  },
  'external-secrets.io/v1/ExternalSecret': {
    model: ExternalSecret,
    types: '@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret',
  },
};

/** Schema violations of one object: required fields, types, enums (the models' own validation). */
export function schemaErrors(o: K8sObject): string[] {
  const entry = MODELS[`${o.apiVersion}/${o.kind}`];
  if (entry === undefined) return [`${o.apiVersion} ${o.kind}: no schema known (add its model to MODELS)`];
  try {
    new entry.model(structuredClone(o) as never).validate();
    return [];
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
}

// The models' JSON schemas allow unknown fields (as the API server's non-strict mode would, dropping
// them silently). A misspelt field (readOnlyRootFileSystem, podselector) must fail instead: the field
// names are read from the models' own type declarations.

type Shape =
  | { kind: 'object'; fields: Map<string, Shape | (() => Shape)> }
  | { kind: 'array'; of: Shape | (() => Shape) }
  | { kind: 'map'; of: Shape | (() => Shape) }
  | { kind: 'leaf' };

const LEAF: Shape = { kind: 'leaf' };
const fileShapes = new Map<string, Shape>();

function findPackageDir(fromDir: string, pkg: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', pkg);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

function resolveTypes(spec: string, fromFile: string): string | undefined {
  if (spec.startsWith('.')) return resolve(dirname(fromFile), spec.replace(/\.js$/, '.d.ts'));
  const parts = spec.split('/');
  const pkgLength = spec.startsWith('@') ? 2 : 1;
  const pkgDir = findPackageDir(dirname(fromFile), parts.slice(0, pkgLength).join('/'));
  if (pkgDir === undefined) return undefined;
  const rest = parts.slice(pkgLength).join('/');
  for (const candidate of [`${join(pkgDir, rest)}.d.ts`, join(pkgDir, rest, 'index.d.ts')])
    if (existsSync(candidate)) return candidate;
  return undefined;
}

/** The text between the brace at `open` and its match. */
function braceBody(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error('unbalanced braces');
}

/** `"name"?: Type;` members at depth 0 of an interface or inline object body. */
function members(body: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /"([^"]+)"\??:\s*/g;
  let depth = 0;
  let i = 0;
  while (i < body.length) {
    const c = body[i] as string;
    if (c === '{' || c === '<' || c === '(') depth++;
    else if (c === '}' || c === '>' || c === ')') depth--;
    else if (depth === 0 && c === '"') {
      re.lastIndex = i;
      const m = re.exec(body);
      if (m !== null && m.index === i) {
        let j = re.lastIndex;
        let d = 0;
        for (; j < body.length; j++) {
          const cj = body[j];
          if (cj === '{' || cj === '<' || cj === '(') d++;
          else if (cj === '}' || cj === '>' || cj === ')') d--;
          else if (cj === ';' && d === 0) break;
        }
        out.push([m[1] as string, body.slice(re.lastIndex, j).trim()]);
        i = j + 1;
        continue;
      }
    }
    i++;
  }
  return out;
}

function typeShape(type: string, imports: Map<string, string>, file: string): Shape | (() => Shape) {
  const t = type.replace(/\s+/g, ' ').trim();
  const array = /^Array<(.*)>$/.exec(t);
  if (array) return { kind: 'array', of: typeShape(array[1] as string, imports, file) };
  if (t.startsWith('{')) {
    const body = braceBody(t, 0);
    const index = /^\s*\[\w+: string\]:\s*(.*?);?\s*$/s.exec(body);
    if (index) return { kind: 'map', of: typeShape(index[1] as string, imports, file) };
    return objectShape(body, imports, file);
  }
  const spec = /^\w+$/.test(t) ? imports.get(t) : undefined;
  if (spec === undefined) return LEAF;
  const target = resolveTypes(spec, file);
  // Resolved lazily: the Kubernetes types are recursive (JSONSchemaProps and friends).
  return target === undefined ? LEAF : () => fileShape(target);
}

function objectShape(body: string, imports: Map<string, string>, file: string): Shape {
  const fields = new Map<string, Shape | (() => Shape)>();
  for (const [name, type] of members(body)) fields.set(name, typeShape(type, imports, file));
  return { kind: 'object', fields };
}

function fileShape(file: string): Shape {
  const cached = fileShapes.get(file);
  if (cached) return cached;
  // Doc comments hold quotes, braces and angle brackets: drop them before reading members.
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/import \{([^}]*)\} from "([^"]+)"/g))
    for (const name of (m[1] as string).split(','))
      imports.set(
        name
          .trim()
          .split(/\s+as\s+/)
          .at(-1) as string,
        m[2] as string,
      );
  const decl = /export interface \w+(?:\s+extends\s+([^{]+))?\s*\{/.exec(text);
  if (decl === null) {
    fileShapes.set(file, LEAF);
    return LEAF;
  }
  const shape = objectShape(braceBody(text, decl.index + decl[0].length - 1), imports, file) as Extract<
    Shape,
    { kind: 'object' }
  >;
  fileShapes.set(file, shape);
  for (const parent of (decl[1] ?? '').split(',').map((s) => s.trim())) {
    if (parent === '') continue;
    if (parent === 'TypeMeta') {
      shape.fields.set('apiVersion', LEAF);
      shape.fields.set('kind', LEAF);
      continue;
    }
    const spec = imports.get(parent);
    const target = spec === undefined ? undefined : resolveTypes(spec, file);
    const inherited = target === undefined ? LEAF : fileShape(target);
    if (inherited.kind === 'object') for (const [k, v] of inherited.fields) shape.fields.set(k, v);
  }
  return shape;
}

const force = (s: Shape | (() => Shape)): Shape => (typeof s === 'function' ? s() : s);

/** Fields a model's type declarations do not know, as paths (spec.template.spec.containers[0].x). */
export function unknownFields(o: K8sObject): string[] {
  const entry = MODELS[`${o.apiVersion}/${o.kind}`];
  if (entry === undefined) return [`${o.apiVersion} ${o.kind}: no schema known`];
  const file = resolveTypes(entry.types, join(ROOT, 'package.json'));
  if (file === undefined) throw new Error(`cannot find the type declarations of ${entry.types}`);
  const errors: string[] = [];
  const walk = (value: unknown, shape: Shape, path: string) => {
    if (shape.kind === 'leaf' || value === null || value === undefined) return;
    if (shape.kind === 'array') {
      if (Array.isArray(value))
        for (const [i, v] of value.entries()) walk(v, force(shape.of), `${path}[${i}]`);
      return;
    }
    if (typeof value !== 'object' || Array.isArray(value)) return;
    for (const [key, v] of Object.entries(value)) {
      const child = shape.kind === 'map' ? shape.of : shape.fields.get(key);
      const childPath = path === '' ? key : `${path}.${key}`;
      if (child === undefined) errors.push(`${childPath}: unknown field`);
      else walk(v, force(child), childPath);
    }
  };
  walk(o, fileShape(file), '');
  return errors;
}

// ---- pods -----------------------------------------------------------------------------------

export interface PodOwner {
  owner: K8sObject;
  // biome-ignore lint/suspicious/noExplicitAny: a rendered PodTemplateSpec.
  template: any;
}

export function podOwners(objects: K8sObject[]): PodOwner[] {
  return objects
    .filter((o) => ['Deployment', 'StatefulSet', 'Job', 'CronJob', 'DaemonSet'].includes(o.kind))
    .map((owner) => ({
      owner,
      template: owner.kind === 'CronJob' ? owner.spec.jobTemplate.spec.template : owner.spec.template,
    }));
}

/** Label selector semantics for matchLabels (the only form these manifests use). */
export function selects(
  selector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] } | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  if (selector === undefined) return false;
  if (selector.matchExpressions !== undefined && selector.matchExpressions.length > 0)
    throw new Error('matchExpressions are not evaluated by these tests: use matchLabels');
  return Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
}
