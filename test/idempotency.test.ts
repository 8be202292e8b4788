import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDeployment, buildTestApp, type Deployment, type TestApp } from './helpers/app.ts';
import { createKey } from './helpers/auth.ts';
import { notes } from './helpers/notes.ts';

const RATE = { RATE_LIMIT_MAX_REQUESTS: '100000', RATE_LIMIT_WINDOW_MS: '1000' };

/** Two resources with the shared machinery on, as a fork that copied one would have. */
const twoResources = async (app: Parameters<ReturnType<typeof notes>>[0]) => {
  await notes({ name: 'notes' })(app);
  await notes({ name: 'tasks' })(app);
};

describe('idempotency across instances and resources', () => {
  let deployment: Deployment;
  let a: TestApp;
  let b: TestApp;
  let key: string;
  beforeAll(async () => {
    deployment = await buildDeployment(2, { env: RATE, extend: twoResources });
    [a, b] = deployment.instances as [TestApp, TestApp];
    key = (await createKey(a.app, ['admin'], { subject: 'idem' })).key;
  });
  afterAll(() => deployment.close());

  const post = (
    t: TestApp,
    idempotencyKey: string,
    body: object,
    options: { path?: string; apiKey?: string } = {},
  ) =>
    request(t.app.server)
      .post(options.path ?? '/v1/notes')
      .set('x-api-key', options.apiKey ?? key)
      .set('idempotency-key', idempotencyKey)
      .send(body);
  const count = async (table: string, name: string) =>
    (await a.app.db.query(`SELECT count(*)::int AS n FROM ${table} WHERE name = $1`, [name])).rows[0].n;

  it('when two resources get the same key and body, then each creates its own row: no cross-resource replay', async () => {
    const note = await post(a, 'same-key', { name: 'same body' });
    const task = await post(b, 'same-key', { name: 'same body' }, { path: '/v1/tasks' });
    expect([note.status, task.status]).toEqual([201, 201]);
    expect(task.headers['idempotent-replayed']).toBeUndefined();
    expect(task.headers.location).toMatch(/^\/v1\/tasks\//);
    expect(await count('notes', 'same body')).toBe(1);
    expect(await count('tasks', 'same body')).toBe(1);
    // Each still replays its own first response.
    const taskAgain = await post(a, 'same-key', { name: 'same body' }, { path: '/v1/tasks' });
    expect(taskAgain.body).toEqual(task.body);
    expect(taskAgain.headers['idempotent-replayed']).toBe('true');
  });

  it('when the same key comes with another body, then 422 and nothing is written', async () => {
    await post(a, 'retry-2', { name: 'first body' });
    const res = await post(b, 'retry-2', { name: 'second body' });
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe('urn:problem-type:idempotency-key-reused');
    expect(await count('notes', 'second body')).toBe(0);
  });

  it('when another principal uses the same key, then it is a separate request', async () => {
    const other = (await createKey(a.app, ['admin'], { subject: 'someone-else' })).key;
    const mine = await post(a, 'shared-key', { name: 'shared' });
    const theirs = await post(a, 'shared-key', { name: 'shared' }, { apiKey: other });
    expect(theirs.status).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.body.id).not.toBe(mine.body.id);
  });

  it('when the key is malformed, then 400 naming the header', async () => {
    const spaced = await post(a, 'has space', { name: 'x' });
    expect(spaced.status).toBe(400);
    expect(spaced.body.errors[0]).toMatchObject({ in: 'headers', path: '/idempotency-key' });
    expect((await post(a, 'k'.repeat(256), { name: 'x' })).status).toBe(400);
  });

  it('when a stored key is older than 24 h, then it can be used again', async () => {
    await post(a, 'old-key', { name: 'old' });
    await a.app.db.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old-key'`,
    );
    const res = await post(a, 'old-key', { name: 'new body after expiry' });
    expect(res.status).toBe(201);
    expect(res.headers['idempotent-replayed']).toBeUndefined();
  });

  it('when the key is stored, then it is keyed by subject, method and route pattern', async () => {
    await post(a, 'shape', { name: 'shape' });
    const { rows } = await a.app.db.query(
      `SELECT subject, method, route, status_code AS "statusCode" FROM idempotency_keys WHERE key = 'shape'`,
    );
    expect(rows).toEqual([{ subject: 'idem', method: 'POST', route: '/v1/notes', statusCode: 201 }]);
  });
});

describe('idempotency when the route fails', () => {
  let t: TestApp;
  let key: string;
  let failNext = false;
  beforeAll(async () => {
    t = await buildTestApp({
      env: RATE,
      extend: notes({
        afterInsert: () => {
          if (failNext) {
            failNext = false;
            throw new Error('boom after the insert');
          }
        },
      }),
    });
    key = (await createKey(t.app, ['admin'], { subject: 'failing' })).key;
  });
  afterAll(() => t.close());

  it('when the handler fails after its write, then the write and the key roll back and a retry runs again', async () => {
    const post = () =>
      request(t.app.server)
        .post('/v1/notes')
        .set('x-api-key', key)
        .set('idempotency-key', 'f1')
        .send({ name: 'f' });
    failNext = true;
    const failed = await post();
    expect(failed.status).toBe(500);
    const { rows } = await t.app.db.query(`SELECT count(*)::int AS n FROM notes WHERE name = 'f'`);
    expect(rows[0].n).toBe(0);
    expect((await t.app.db.query(`SELECT 1 FROM idempotency_keys WHERE key = 'f1'`)).rowCount).toBe(0);
    const retried = await post();
    expect(retried.status).toBe(201);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    // No connection leaked: every pooled connection is back.
    expect(t.app.db.totalCount - t.app.db.idleCount).toBe(0);
  });

  it('when no key is sent, then the route writes through the pool as usual', async () => {
    const res = await request(t.app.server).post('/v1/notes').set('x-api-key', key).send({ name: 'plain' });
    expect(res.status).toBe(201);
    expect((await t.app.db.query(`SELECT count(*)::int AS n FROM idempotency_keys`)).rows[0].n).toBe(1);
  });

  it('when the OpenAPI document is read, then the idempotent route documents the header', async () => {
    const doc = (await request(t.app.server).get('/openapi.json')).body;
    const parameters = doc.paths['/v1/notes'].post.parameters as { name: string; in: string }[];
    expect(parameters).toContainEqual(expect.objectContaining({ name: 'idempotency-key', in: 'header' }));
  });
});

describe('app.withTransaction', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp({ redis: false });
    await t.app.db.query('CREATE TABLE tx_test (n integer)');
  });
  afterAll(() => t.close());

  it('when the function resolves, then its statements commit; when it throws, then none do', async () => {
    await t.app.withTransaction(async (tx) => {
      await tx.query('INSERT INTO tx_test VALUES (1)');
    });
    await expect(
      t.app.withTransaction(async (tx) => {
        await tx.query('INSERT INTO tx_test VALUES (2)');
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect((await t.app.db.query('SELECT n FROM tx_test ORDER BY n')).rows).toEqual([{ n: 1 }]);
    expect(t.app.db.totalCount - t.app.db.idleCount).toBe(0);
  });

  it('when the connection dies inside the transaction, then it is destroyed, not returned to the pool', async () => {
    await expect(
      t.app.withTransaction(async (tx) => {
        await tx.query('SELECT pg_terminate_backend(pg_backend_pid())').catch(() => {});
        await tx.query('INSERT INTO tx_test VALUES (3)');
      }),
    ).rejects.toThrow();
    // The pool still works: the next query gets a fresh connection.
    expect((await t.app.db.query('SELECT count(*)::int AS n FROM tx_test')).rows[0].n).toBe(1);
  });
});
