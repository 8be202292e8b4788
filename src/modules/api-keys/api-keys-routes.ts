// Owns the admin endpoints for API keys: create (secret shown once), list (never secrets), revoke.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { decodeCursor, encodeCursor, PG_TIMESTAMPTZ } from '../../lib/cursor.ts';
import { notFound } from '../../lib/problem.ts';
import { openapiTag } from '../../plugins/openapi.ts';
import { createApiKeysRepository } from './api-keys-repository.ts';
import {
  ApiKeyIdParams,
  ApiKeyList,
  CreateApiKeyBody,
  CreatedApiKey,
  ListApiKeysQuery,
} from './api-keys-schemas.ts';
import { issueApiKey, toApiKeyDto } from './api-keys-service.ts';

const tags = openapiTag('api-keys', 'Admin: API keys (scope admin). The secret is shown once, at creation.');

export default async function apiKeysRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const repo = createApiKeysRepository(app.db);
  const admin = app.requireScope('admin');

  app.post(
    '/api-keys',
    {
      preHandler: admin,
      config: { openapi: { headers: { 201: ['Location'] } } },
      schema: {
        operationId: 'createApiKey',
        summary: 'Create an API key',
        tags,
        body: CreateApiKeyBody,
        response: { 201: CreatedApiKey },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      const body = request.body;
      const { row, key } = await issueApiKey(repo, app.config.API_KEY_PREFIX, {
        name: body.name,
        subject: body.subject ?? principal.subject,
        scopes: body.scopes,
        expiresAt: body.expiresInDays ? new Date(Date.now() + body.expiresInDays * 86_400_000) : null,
      });
      await app.auth.audit(request, {
        action: 'api_key.created',
        subject: principal.subject,
        apiKeyId: row.id,
        details: { name: row.name, forSubject: row.subject, scopes: row.scopes },
      });
      reply.code(201).header('location', `/v1/api-keys/${row.id}`).header('cache-control', 'no-store');
      return { ...toApiKeyDto(row), key };
    },
  );

  app.get(
    '/api-keys',
    {
      preHandler: admin,
      schema: {
        operationId: 'listApiKeys',
        summary: 'List API keys, newest first',
        tags,
        querystring: ListApiKeysQuery,
        response: { 200: ApiKeyList },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query;
      const before = cursor ? decodeCursor(cursor, [PG_TIMESTAMPTZ, /^[0-9a-f]{16}$/]) : undefined;
      const rows = await repo.list({
        limit: limit + 1,
        ...(before ? { before: { cursorAt: before[0] as string, id: before[1] as string } } : {}),
      });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      const next = rows.length > limit && last ? encodeCursor([last.cursorAt, last.id]) : null;
      return { items: page.map(toApiKeyDto), next };
    },
  );

  app.delete(
    '/api-keys/:id',
    {
      preHandler: admin,
      schema: {
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key (and every token minted from it)',
        tags,
        params: ApiKeyIdParams,
        response: { 204: z.undefined().describe('Revoked.') },
      },
    },
    async (request, reply) => {
      const row = await repo.revoke(request.params.id);
      if (row === null) throw notFound('No active API key with this id.');
      await app.auth.invalidateApiKey(row.id);
      await app.auth.audit(request, {
        action: 'api_key.revoked',
        subject: request.principal!.subject,
        apiKeyId: row.id,
        details: { forSubject: row.subject },
      });
      return reply.code(204).send();
    },
  );
}
