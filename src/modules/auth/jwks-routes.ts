// Owns GET /.well-known/jwks.json: the public keys that verify this service's tokens (RS256/ES256 only).
import type { FastifyInstance } from 'fastify';
import { jwksDocument } from '../../lib/jwt-keys.ts';
import { Jwks } from './auth-schemas.ts';

export default async function jwksRoutes(app: FastifyInstance) {
  if (app.config.JWT_ALGORITHM === 'HS256') return; // a shared secret is never published
  // Serialized once: a string body is sent as it is, the schema documents it (hence no type provider).
  const body = JSON.stringify(jwksDocument(app.auth.jwtKeys));
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        summary: 'The public keys that verify tokens',
        tags: ['auth'],
        response: { 200: Jwks },
      },
    },
    async (_request, reply) =>
      reply.type('application/json').header('cache-control', 'public, max-age=300').send(body),
  );
}
