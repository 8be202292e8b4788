// A client generated from the served OpenAPI document: openapi-typescript writes its types, a driver
// typed by them (checked by tsc) runs create/get/list/patch/delete through openapi-fetch against the
// real server, problems on 404 and 412 included. If the document lies, the driver fails to typecheck
// or its assertions fail.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contractTool, skipNote, TOOLS_DIR } from './contract/tools.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const generator = contractTool('openapi-typescript');

const DRIVER = `
import createClient from 'openapi-fetch';
import type { components, paths } from './api.d.ts';

declare const process: { env: Record<string, string | undefined> };

type Item = components['schemas']['Item'];
type Problem = components['schemas']['Problem'];

const client = createClient<paths>({
  baseUrl: process.env.BASE_URL as string,
  headers: { authorization: \`Bearer \${process.env.API_KEY}\` },
});

const created = await client.POST('/v1/items', {
  params: { header: { 'idempotency-key': 'client-test-1' } },
  body: { name: 'from a generated client', tags: ['generated'] },
});
if (created.error) throw new Error(\`create: \${created.error.title}\`);
const item: Item = created.data;
const location: string | null = created.response.headers.get('location');

const read = await client.GET('/v1/items/{id}', { params: { path: { id: item.id } } });
if (read.error) throw new Error(\`get: \${read.error.title}\`);
const etag = read.response.headers.get('etag') as string;

const list = await client.GET('/v1/items', { params: { query: { limit: 10, tag: 'generated' } } });
if (list.error) throw new Error(\`list: \${list.error.title}\`);
const listed: Item[] = list.data.items;

const stale = await client.PATCH('/v1/items/{id}', {
  params: { path: { id: item.id }, header: { 'if-match': '"v999"' } },
  body: { name: 'never written' },
});
const preconditionFailed: Problem | undefined = stale.error;

const patched = await client.PATCH('/v1/items/{id}', {
  params: { path: { id: item.id }, header: { 'if-match': etag } },
  body: { name: 'renamed', description: null },
});
if (patched.error) throw new Error(\`patch: \${patched.error.title}\`);

const deleted = await client.DELETE('/v1/items/{id}', { params: { path: { id: item.id } } });
const gone = await client.GET('/v1/items/{id}', { params: { path: { id: item.id } } });
const notFound: Problem | undefined = gone.error;

console.log(JSON.stringify({
  created: { status: created.response.status, name: item.name, location },
  read: { status: read.response.status, id: read.data.id, etag },
  listed: listed.map((i) => i.id),
  stale: { status: stale.response.status, type: preconditionFailed?.type, contentType: stale.response.headers.get('content-type') },
  patched: { status: patched.response.status, name: patched.data.name, description: patched.data.description, version: patched.data.version },
  deleted: { status: deleted.response.status },
  gone: { status: gone.response.status, type: notFound?.type, requestId: notFound?.requestId },
}));
`;

const TSCONFIG = {
  compilerOptions: {
    strict: true,
    noEmit: true,
    target: 'es2024',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    skipLibCheck: true,
    lib: ['es2024', 'dom'],
    types: [],
  },
  include: ['drive.ts', 'api.d.ts'],
};

describe.skipIf(!generator)(
  `a client generated from /openapi.json${skipNote('openapi-typescript', generator)}`,
  () => {
    let t: TestApp;
    let dir: string;
    let baseUrl: string;
    let key: string;
    beforeAll(async () => {
      t = await buildTestApp({ env: { RATE_LIMIT_MAX_REQUESTS: '1000' } });
      await t.app.listen({ port: 0, host: '127.0.0.1' });
      baseUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
      key = (await createKey(t.app, ['items:read', 'items:write'])).key;
      dir = mkdtempSync(join(tmpdir(), 'openapi-client-'));
      writeFileSync(
        join(dir, 'openapi.json'),
        JSON.stringify((await request(t.app.server).get('/openapi.json')).body),
      );
      writeFileSync(join(dir, 'drive.ts'), DRIVER);
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG));
      writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
      symlinkSync(join(TOOLS_DIR, 'node_modules'), join(dir, 'node_modules'), 'dir');
    });
    afterAll(async () => {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const run = (command: string, args: string[], env: Record<string, string> = {}) =>
      execFileSync(command, args, {
        cwd: dir,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, ...env },
      });

    it('when types are generated and a driver uses them, then it typechecks and every call answers as documented', async () => {
      run(generator as string, ['openapi.json', '--output', 'api.d.ts']);
      try {
        run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json']);
      } catch (err) {
        throw new Error(`the generated client does not typecheck:\n${(err as { stdout?: string }).stdout}`);
      }
      // Asynchronously: the server answering the driver runs in this process.
      const { stdout } = await promisify(execFile)(process.execPath, ['drive.ts'], {
        cwd: dir,
        timeout: 60_000,
        env: { ...process.env, BASE_URL: baseUrl, API_KEY: key },
      });
      const out = JSON.parse(stdout);
      expect(out.created).toMatchObject({ status: 201, name: 'from a generated client' });
      expect(out.created.location).toMatch(/^\/v1\/items\/[0-9a-f-]{36}$/);
      expect(out.read).toMatchObject({ status: 200, etag: '"v1"' });
      expect(out.listed).toContain(out.read.id);
      expect(out.stale).toEqual({
        status: 412,
        type: expect.stringContaining('precondition-failed'),
        contentType: 'application/problem+json; charset=utf-8',
      });
      expect(out.patched).toEqual({ status: 200, name: 'renamed', description: null, version: 2 });
      expect(out.deleted).toEqual({ status: 204 });
      expect(out.gone).toMatchObject({ status: 404, type: expect.stringContaining('not-found') });
      expect(out.gone.requestId).toEqual(expect.any(String));
    }, 180_000);
  },
);
