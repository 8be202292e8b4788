// Owns /v1/items: the example resource. Owner-scoped CRUD, keyset pages, ETags; it turns on the shared
// machinery per route: idempotent POST, cached GETs, invalidation on writes.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, encodeCursor, PG_TIMESTAMPTZ } from '../../lib/cursor.ts';
import { etagOf, matches, versionFromIfMatch } from '../../lib/etag.ts';
import { HttpProblem, notFound } from '../../lib/problem.ts';
import { openapiTag } from '../../plugins/openapi.ts';
import { createItemsRepository, type ItemRow } from './items-repository.ts';
import {
  CreateItemBody,
  Item,
  ItemIdParams,
  ItemList,
  ListItemsQuery,
  ReadItemHeaders,
  UpdateItemBody,
  WriteItemHeaders,
} from './items-schemas.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const tags = openapiTag('items', "The example resource: items of the caller (the credential's subject).");

/** Every response of one owner shares a cache tag: any write by that owner invalidates them all. */
const ownerTag = (request: FastifyRequest) => `items:${request.principal?.subject}`;
const cached = { cache: { tag: ownerTag } };
const invalidates = { cache: { invalidates: ownerTag } };

function toItem(row: ItemRow): Item {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    tags: row.tags,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

const preconditionFailed = () =>
  new HttpProblem(412, 'precondition-failed', 'Precondition Failed', {
    detail: 'The item changed since you read it (If-Match does not match its ETag).',
  });

export default async function itemsRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const repo = createItemsRepository(app.db);
  const canRead = app.requireScope('items:read');
  const canWrite = app.requireScope('items:write');
  const owner = (request: FastifyRequest) => request.principal!.subject;

  app.post(
    '/items',
    {
      preHandler: canWrite,
      config: { idempotency: true, ...invalidates, openapi: { headers: { 201: ['Location', 'ETag'] } } },
      schema: {
        operationId: 'createItem',
        summary: 'Create an item',
        tags,
        body: CreateItemBody,
        response: { 201: Item },
      },
    },
    async (request, reply) => {
      // request.db: with an Idempotency-Key, the insert commits together with the stored response.
      const row = await createItemsRepository(request.db).insert(owner(request), request.body);
      return reply
        .code(201)
        .header('location', `/v1/items/${row.id}`)
        .header('etag', etagOf(row.version))
        .send(toItem(row));
    },
  );

  app.get(
    '/items/:id',
    {
      preHandler: canRead,
      config: { ...cached, openapi: { headers: { 200: ['ETag'], 304: ['ETag'] } } },
      schema: {
        operationId: 'getItem',
        summary: 'Get an item',
        tags,
        params: ItemIdParams,
        headers: ReadItemHeaders,
        response: { 200: Item, 304: z.null() },
      },
    },
    async (request, reply) => {
      const row = await repo.findById(owner(request), request.params.id);
      // Another owner's item is indistinguishable from a missing one.
      if (row === null) throw notFound('No item with this id.');
      const etag = etagOf(row.version);
      reply.header('etag', etag);
      // 304 carries no body (Node drops it); the null only satisfies the schema.
      if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send(null);
      return toItem(row);
    },
  );

  app.get(
    '/items',
    {
      preHandler: canRead,
      config: cached,
      schema: {
        operationId: 'listItems',
        summary: 'List items, a page at a time',
        tags,
        querystring: ListItemsQuery,
        response: { 200: ItemList },
      },
    },
    async (request) => {
      const { limit, cursor, order, tag, namePrefix } = request.query;
      // The order is part of the cursor, so a page of one order is never continued in the other.
      const after = cursor ? decodeCursor(cursor, [/^(newest|oldest)$/, PG_TIMESTAMPTZ, UUID]) : undefined;
      if (after && after[0] !== order)
        throw new HttpProblem(400, 'validation-error', 'Validation Failed', {
          detail: 'The cursor belongs to another order.',
        });
      const rows = await repo.list(owner(request), {
        limit: limit + 1,
        order,
        ...(after ? { after: { cursorAt: after[1] as string, id: after[2] as string } } : {}),
        ...(tag === undefined ? {} : { tag }),
        ...(namePrefix === undefined ? {} : { namePrefix }),
      });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        items: page.map(toItem),
        next: rows.length > limit && last ? encodeCursor([order, last.cursorAt, last.id]) : null,
      };
    },
  );

  app.patch(
    '/items/:id',
    {
      preHandler: canWrite,
      config: { ...invalidates, openapi: { headers: { 200: ['ETag'] } } },
      schema: {
        operationId: 'updateItem',
        summary: 'Change an item (JSON merge patch)',
        tags,
        params: ItemIdParams,
        headers: WriteItemHeaders,
        body: UpdateItemBody,
        // JSON merge patch (RFC 7396) as well as JSON; any other type is 415.
        consumes: ['application/json', 'application/merge-patch+json'],
        response: { 200: Item },
      },
    },
    async (request, reply) => {
      const expected = versionFromIfMatch(request.headers['if-match']);
      if (expected === 'invalid') throw preconditionFailed();
      const version = typeof expected === 'number' ? expected : undefined;
      const row = await repo.update(owner(request), request.params.id, request.body, version);
      if (row === null) {
        if (version !== undefined && (await repo.exists(owner(request), request.params.id)))
          throw preconditionFailed();
        throw notFound('No item with this id.');
      }
      return reply.header('etag', etagOf(row.version)).send(toItem(row));
    },
  );

  app.delete(
    '/items/:id',
    {
      preHandler: canWrite,
      config: invalidates,
      schema: {
        operationId: 'deleteItem',
        summary: 'Delete an item',
        tags,
        params: ItemIdParams,
        headers: WriteItemHeaders,
        response: { 204: z.undefined().describe('Deleted.') },
      },
    },
    async (request, reply) => {
      const expected = versionFromIfMatch(request.headers['if-match']);
      if (expected === 'invalid') throw preconditionFailed();
      const version = typeof expected === 'number' ? expected : undefined;
      if (!(await repo.delete(owner(request), request.params.id, version))) {
        if (version !== undefined && (await repo.exists(owner(request), request.params.id)))
          throw preconditionFailed();
        throw notFound('No item with this id.');
      }
      return reply.code(204).send();
    },
  );
}
