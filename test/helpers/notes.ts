// Owns a test-only resource that switches on the shared route machinery (auth, scope, cache tag and
// invalidation, idempotency, request.db), so the tests of that machinery outlive the example
// resource, which forks delete. Register it with buildTestApp({ extend: notes() }).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { etagOf, matches } from '../../src/lib/etag.ts';
import { notFound } from '../../src/lib/problem.ts';

export interface NotesOptions {
  /** The path under /v1 and the table name (two instances of the fixture are two resources). */
  name?: string;
  /** Called by POST after its insert: a test makes it throw to see the write rolled back. */
  afterInsert?: (request: FastifyRequest) => void | Promise<void>;
}

const Note = z.object({ id: z.uuid(), name: z.string(), version: z.number().int() });
const Params = z.strictObject({ id: z.uuid() });
const Body = z.strictObject({ name: z.string().min(1).max(200) });

export function notes(options: NotesOptions = {}) {
  const name = options.name ?? 'notes';
  const columns = 'id, name, version';
  return async (root: FastifyInstance) => {
    await root.db.query(`CREATE TABLE IF NOT EXISTS ${name} (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(), owner text NOT NULL, name text NOT NULL,
      version integer NOT NULL DEFAULT 1)`);
    await root.register(
      async (v1) => {
        v1.auth.protect(v1);
        const app = v1.withTypeProvider<ZodTypeProvider>();
        const tag = (request: FastifyRequest) => `${name}:${request.principal?.subject}`;
        const owner = (request: FastifyRequest) => request.principal!.subject;
        const write = app.requireScope('admin');

        app.post(
          `/${name}`,
          {
            preHandler: write,
            config: { idempotency: true, cache: { invalidates: tag } },
            schema: { body: Body, response: { 201: Note } },
          },
          async (request, reply) => {
            const { rows } = await request.db.query(
              `INSERT INTO ${name} (owner, name) VALUES ($1, $2) RETURNING ${columns}`,
              [owner(request), request.body.name],
            );
            await options.afterInsert?.(request);
            return reply.code(201).header('location', `/v1/${name}/${rows[0].id}`).send(rows[0]);
          },
        );
        app.get(
          `/${name}/:id`,
          { config: { cache: { tag } }, schema: { params: Params, response: { 200: Note, 304: z.null() } } },
          async (request, reply) => {
            const { rows } = await app.db.query(
              `SELECT ${columns} FROM ${name} WHERE id = $1 AND owner = $2`,
              [request.params.id, owner(request)],
            );
            if (rows[0] === undefined) throw notFound();
            reply.header('etag', etagOf(rows[0].version));
            if (matches(request.headers['if-none-match'], etagOf(rows[0].version)))
              return reply.code(304).send(null);
            return rows[0];
          },
        );
        app.get(
          `/${name}`,
          {
            config: { cache: { tag } },
            schema: {
              querystring: z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(20) }),
            },
          },
          async (request) => {
            const { rows } = await app.db.query(
              `SELECT ${columns} FROM ${name} WHERE owner = $1 ORDER BY name LIMIT $2`,
              [owner(request), request.query.limit],
            );
            return { items: rows };
          },
        );
        app.patch(
          `/${name}/:id`,
          {
            preHandler: write,
            config: { cache: { invalidates: tag } },
            schema: { params: Params, body: Body },
          },
          async (request) => {
            const { rows } = await app.db.query(
              `UPDATE ${name} SET name = $3, version = version + 1 WHERE id = $1 AND owner = $2 RETURNING ${columns}`,
              [request.params.id, owner(request), request.body.name],
            );
            if (rows[0] === undefined) throw notFound();
            return rows[0];
          },
        );
        app.delete(
          `/${name}/:id`,
          { preHandler: write, config: { cache: { invalidates: tag } }, schema: { params: Params } },
          async (request, reply) => {
            const { rowCount } = await app.db.query(`DELETE FROM ${name} WHERE id = $1 AND owner = $2`, [
              request.params.id,
              owner(request),
            ]);
            if (rowCount !== 1) throw notFound();
            return reply.code(204).send();
          },
        );
      },
      { prefix: '/v1' },
    );
  };
}
