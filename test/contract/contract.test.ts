// The served OpenAPI document, proven against the running app: for every operation it lists, a valid
// request and the invalid ones (no credential, a credential without the scope, unknown, missing and
// mistyped fields, a bad path parameter, an unknown query parameter, an undeclared media type, an
// oversized body, a stale precondition, an exhausted rate limit). Each answer must have the status the
// case calls for, that status must be documented for the operation, and its body and headers must
// match what the document says. Operations are read from the document, so a new resource is covered
// without a line here.
import { randomUUID } from 'node:crypto';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../../src/scopes.ts';
import { buildTestApp, type TestApp } from '../helpers/app.ts';
import { createKey } from '../helpers/auth.ts';

type Json = Record<string, unknown>;
interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  minLength?: number;
  minimum?: number;
  minItems?: number;
  minProperties?: number;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  default?: unknown;
}
interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}
interface Response {
  content?: Record<string, { schema?: Schema }>;
  headers?: Record<string, { required?: boolean; $ref?: string }>;
}
interface Operation {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, Response & { $ref?: string }>;
  security?: Record<string, string[]>[];
}
interface Op {
  method: string;
  path: string;
  operation: Operation;
}
interface Sent {
  status: number;
  headers: Record<string, string>;
  text: string;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Follows a local `#/...` reference in the document. */
function deref<T>(doc: Json, value: T & { $ref?: string }): T {
  if (value.$ref === undefined) return value;
  const found = value.$ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Json)[key.replaceAll('~1', '/').replaceAll('~0', '~')], doc);
  return deref(doc, found as T & { $ref?: string });
}

/** A minimal value the schema accepts: required properties only, lower bounds, first enum member. */
function sample(doc: Json, input: Schema): unknown {
  const schema = deref(doc, input);
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.default !== undefined) return schema.default;
  const options = schema.anyOf ?? schema.oneOf;
  if (options)
    return sample(doc, options.find((o) => deref(doc, o).type !== 'null') ?? (options[0] as Schema));
  if (schema.allOf) return Object.assign({}, ...schema.allOf.map((s) => sample(doc, s)));
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  switch (type) {
    case 'object': {
      const properties = Object.entries(schema.properties ?? {});
      const wanted = new Set(schema.required ?? []);
      // At least minProperties of them (a merge patch needs one field).
      for (const [name] of properties.slice(0, schema.minProperties ?? 0)) wanted.add(name);
      return Object.fromEntries(
        properties.filter(([name]) => wanted.has(name)).map(([name, s]) => [name, sample(doc, s)]),
      );
    }
    case 'array':
      return schema.minItems ? [sample(doc, schema.items ?? {})] : [];
    case 'integer':
    case 'number':
      return schema.minimum ?? 1;
    case 'boolean':
      return true;
    default:
      if (schema.format === 'uuid') return randomUUID();
      if (schema.format === 'date-time') return new Date().toISOString();
      return 'contract'.padEnd(schema.minLength ?? 1, 'x');
  }
}

describe('the OpenAPI contract, operation by operation', () => {
  let t: TestApp;
  let limited: TestApp;
  let doc: Json;
  let ops: Op[];
  let all: string;
  let none: string;
  const validate = new Ajv2020({ strict: false, allErrors: true });
  formats.default(validate);

  beforeAll(async () => {
    t = await buildTestApp({ env: { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' } });
    limited = await buildTestApp({
      db: t.db,
      redis: false,
      env: { RATE_LIMIT_MAX_REQUESTS: '1', RATE_LIMIT_WINDOW_MS: '3600000' },
    });
    all = (await createKey(t.app, [...SCOPES])).key;
    none = (await createKey(t.app, [])).key;
    doc = (await request(t.app.server).get('/openapi.json')).body;
    // The components, addressable by the `#/components/...` references the operations carry.
    validate.addSchema({ $id: 'doc', components: doc.components }, 'doc');
    ops = Object.entries(doc.paths as Record<string, Record<string, Operation>>).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]).map((method) => ({
        method,
        path,
        operation: item[method] as Operation,
      })),
    );
  });
  afterAll(async () => {
    await limited.close();
    await t.close();
  });

  const params = (op: Op, where: Parameter['in']) =>
    (op.operation.parameters ?? []).filter((p) => p.in === where);
  const secured = (op: Op) => (op.operation.security ?? (doc.security as unknown[]) ?? []).length > 0;
  const scopes = (op: Op) => [
    ...new Set((op.operation.security ?? []).flatMap((r) => Object.values(r).flat())),
  ];
  const bodySchema = (op: Op) => op.operation.requestBody?.content['application/json']?.schema;
  const validBody = (op: Op) => {
    const schema = bodySchema(op);
    return schema === undefined ? undefined : sample(doc, schema);
  };

  /** A resource for `{id}`: created through the POST on the collection, or a random (absent) id. */
  async function existingId(op: Op): Promise<string> {
    const collection = op.path.replace(/\/\{[^}]+\}$/, '');
    const create = ops.find((o) => o.method === 'post' && o.path === collection);
    if (create === undefined) return randomUUID();
    const res = await send(t, create, { body: validBody(create) });
    expect(res.status, `${create.operation.operationId} with a sampled body`).toBeLessThan(300);
    return JSON.parse(res.text).id as string;
  }

  async function send(
    app: TestApp,
    op: Op,
    options: {
      id?: string;
      key?: string | null;
      body?: unknown;
      raw?: { type: string; data: string };
      query?: Record<string, unknown>;
      headers?: Record<string, string>;
    } = {},
  ): Promise<Sent> {
    const url = op.path.replace(/\{[^}]+\}/g, () => options.id ?? randomUUID());
    const query = {
      ...Object.fromEntries(
        params(op, 'query')
          .filter((p) => p.required)
          .map((p) => [p.name, sample(doc, p.schema)]),
      ),
      ...options.query,
    };
    let req = request(app.app.server)
      [op.method as 'get'](url)
      .query(query as Record<string, string>);
    const key = options.key === undefined ? all : options.key;
    if (key !== null && secured(op)) req = req.set('authorization', `Bearer ${key}`);
    for (const [name, value] of Object.entries(options.headers ?? {})) req = req.set(name, value);
    if (options.raw) req = req.set('content-type', options.raw.type).send(options.raw.data);
    else if (options.body !== undefined) req = req.send(options.body as object);
    const res = await req.buffer(true).parse((r, done) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (chunk: string) => {
        text += chunk;
      });
      r.on('end', () => done(null, text));
    });
    return { status: res.status, headers: res.headers as Record<string, string>, text: res.body as string };
  }

  /** What the document says about this answer; the differences, as readable lines. */
  function mismatches(op: Op, res: Sent): string[] {
    const name = `${op.operation.operationId} ${res.status}`;
    const documented = op.operation.responses[String(res.status)] ?? op.operation.responses.default;
    if (documented === undefined) return [`${name}: status not documented (${res.text.slice(0, 200)})`];
    const response = deref<Response>(doc, documented);
    const out: string[] = [];
    for (const [header, spec] of Object.entries(response.headers ?? {}))
      if (deref(doc, spec).required && res.headers[header.toLowerCase()] === undefined)
        out.push(`${name}: required header ${header} missing`);
    const content = Object.keys(response.content ?? {});
    if (content.length === 0) {
      if (res.text !== '')
        out.push(`${name}: documented without content, answered ${res.text.slice(0, 100)}`);
      return out;
    }
    const type = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    const media = response.content?.[type];
    if (media === undefined) return [...out, `${name}: content-type ${type} not documented (${content})`];
    if (media.schema === undefined || !type.includes('json')) return out;
    const schema = JSON.parse(JSON.stringify(media.schema).replaceAll('"#/components/', '"doc#/components/'));
    if (!validate.validate(schema, JSON.parse(res.text)))
      out.push(
        `${name}: body does not match: ${validate.errorsText(validate.errors)} in ${res.text.slice(0, 300)}`,
      );
    return out;
  }

  let cases = 0;

  /** Sends a case; collects a mismatch if its status is not the expected one or not as documented. */
  async function expectCase(failures: string[], what: string, op: Op, expected: number, sent: Promise<Sent>) {
    const res = await sent;
    cases += 1;
    if (res.status !== expected)
      failures.push(
        `${op.operation.operationId} ${what}: expected ${expected}, got ${res.status} ${res.text.slice(0, 200)}`,
      );
    failures.push(...mismatches(op, res).map((m) => `${m} [${what}]`));
  }

  it('when each operation gets a valid request, then it succeeds and the answer is the documented one', async () => {
    expect(ops.length).toBeGreaterThan(5);
    const failures: string[] = [];
    for (const op of ops) {
      const id = op.path.includes('{') ? await existingId(op) : undefined;
      const res = await send(t, op, { id, body: validBody(op) });
      if (res.status >= 300)
        failures.push(
          `${op.operation.operationId}: valid request answered ${res.status} ${res.text.slice(0, 200)}`,
        );
      failures.push(...mismatches(op, res));
    }
    expect(failures).toEqual([]);
  });

  it('when each operation gets the invalid requests that apply to it, then each answers its documented problem', async () => {
    const failures: string[] = [];
    const bodyLimit = t.app.config.BODY_LIMIT;
    for (const op of ops) {
      const id = op.path.includes('{') ? await existingId(op) : undefined;
      const body = validBody(op);
      if (secured(op)) {
        await expectCase(failures, 'without a credential', op, 401, send(t, op, { id, body, key: null }));
        await expectCase(
          failures,
          'with a malformed credential',
          op,
          401,
          send(t, op, { id, body, key: 'nope' }),
        );
      }
      if (scopes(op).length > 0)
        await expectCase(failures, 'without the scope', op, 403, send(t, op, { id, body, key: none }));
      for (const p of params(op, 'path'))
        if (deref(doc, p.schema).format === 'uuid') {
          await expectCase(
            failures,
            `with a malformed ${p.name}`,
            op,
            400,
            send(t, op, { id: 'not-a-uuid', body }),
          );
          if (op.method !== 'post')
            await expectCase(
              failures,
              `with an unknown ${p.name}`,
              op,
              404,
              send(t, op, { id: randomUUID(), body }),
            );
        }
      if (params(op, 'query').length > 0)
        await expectCase(
          failures,
          'with an unknown query parameter',
          op,
          400,
          send(t, op, { id, body, query: { surplus: '1' } }),
        );
      const schema = bodySchema(op);
      if (schema !== undefined) {
        const resolved = deref(doc, schema);
        await expectCase(failures, 'with an array for a body', op, 400, send(t, op, { id, body: [1] }));
        if (resolved.additionalProperties === false)
          await expectCase(
            failures,
            'with an unknown field',
            op,
            400,
            send(t, op, { id, body: { ...(body as Json), surplus: 1 } }),
          );
        for (const field of resolved.required ?? []) {
          const { [field]: _, ...rest } = body as Json;
          await expectCase(failures, `without ${field}`, op, 400, send(t, op, { id, body: rest }));
          await expectCase(
            failures,
            `with ${field} of the wrong type`,
            op,
            400,
            send(t, op, { id, body: { ...(body as Json), [field]: { wrong: true } } }),
          );
        }
        await expectCase(
          failures,
          'as text/plain',
          op,
          415,
          send(t, op, { id, raw: { type: 'text/plain', data: 'hello' } }),
        );
        await expectCase(
          failures,
          'over the body limit',
          op,
          413,
          send(t, op, {
            id,
            raw: { type: 'application/json', data: JSON.stringify({ pad: 'x'.repeat(bodyLimit) }) },
          }),
        );
      }
      if (params(op, 'header').some((p) => p.name.toLowerCase() === 'if-match'))
        await expectCase(
          failures,
          'with a stale If-Match',
          op,
          412,
          send(t, op, { id, body, headers: { 'if-match': '"v999"' } }),
        );
    }
    expect(failures).toEqual([]);
    expect(cases).toBeGreaterThan(4 * ops.length); // the cases really ran (68 for 13 operations today)
  });

  it('when a principal has spent its rate limit, then every limited operation answers its documented 429', async () => {
    const failures: string[] = [];
    const limitedOps = ops.filter((o) => o.operation.responses['429'] !== undefined);
    expect(limitedOps.length).toBeGreaterThan(5);
    for (const op of limitedOps) {
      const key = (await createKey(limited.app, [...SCOPES])).key;
      const id = op.path.includes('{') ? randomUUID() : undefined;
      await send(limited, op, { id, key, body: validBody(op) });
      await expectCase(
        failures,
        'over its budget',
        op,
        429,
        send(limited, op, { id, key, body: validBody(op) }),
      );
    }
    expect(failures).toEqual([]);
  });
});
