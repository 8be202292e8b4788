// Owns GET /v1/me, POST /v1/auth/token (API key -> short-lived JWT) and POST /v1/auth/revoke.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { HttpProblem } from '../../lib/problem.ts';
import { forbidden } from '../../plugins/auth.ts';
import { openapiTag } from '../../plugins/openapi.ts';
import { Me, RevokeBody, RevokeResponse, TokenBody, TokenResponse } from './auth-schemas.ts';

const tags = openapiTag(
  'auth',
  'The caller, and tokens: an API key exchanged for a short-lived JWT, revocation.',
);

export default async function authRoutes(fastify: FastifyInstance) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/me',
    { schema: { operationId: 'getMe', summary: 'Who am I', tags, response: { 200: Me } } },
    async (request) => {
      const { subject, scopes, kind, keyId } = request.principal!;
      return { subject, scopes: [...scopes], kind, keyId };
    },
  );

  app.post(
    '/auth/token',
    {
      // 403: a token cannot mint another, and a key cannot grant a scope it lacks.
      config: { openapi: { problems: [403] } },
      schema: {
        operationId: 'issueToken',
        summary: 'Exchange the API key for a short-lived JWT',
        tags,
        body: TokenBody,
        response: { 200: TokenResponse },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      if (principal.kind !== 'api_key')
        throw new HttpProblem(403, 'forbidden', 'Forbidden', {
          detail: 'Only an API key can be exchanged for a token.',
        });
      const requested = request.body?.scopes ?? [...principal.scopes];
      // Never more than the key holds: asking for a scope the key lacks is refused, not trimmed.
      const missing = requested.find((s) => !principal.scopes.includes(s));
      if (missing !== undefined) throw forbidden(missing);
      const scopes = [...new Set(requested)];
      const issued = app.auth.issueToken(principal, scopes);
      await app.auth.audit(request, {
        action: 'token.issued',
        subject: principal.subject,
        apiKeyId: principal.keyId,
        details: { scopes },
      });
      reply.header('cache-control', 'no-store');
      return {
        access_token: issued.accessToken,
        token_type: 'Bearer' as const,
        expires_in: issued.expiresIn,
        scope: scopes.join(' '),
      };
    },
  );

  app.post(
    '/auth/revoke',
    {
      // 403: only an admin revokes another subject's token.
      config: { openapi: { problems: [403] } },
      schema: {
        operationId: 'revokeToken',
        summary: 'Revoke a JWT until it expires',
        tags,
        body: RevokeBody,
        response: { 200: RevokeResponse },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const result = await app.auth.revokeToken(request.body.token, principal);
      if (result.revoked)
        await app.auth.audit(request, {
          action: 'token.revoked',
          subject: principal.subject,
          apiKeyId: principal.keyId,
        });
      return result;
    },
  );
}
