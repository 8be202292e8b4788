// Owns scope guards: the preHandler behind app.requireScope, which refuses an undeclared scope at start-up.
import type { preHandlerHookHandler } from 'fastify';
import { isScope, SCOPES, type Scope } from '../../scopes.ts';
import { forbidden, unauthorized } from './failures.ts';

export function requireScope(scope: Scope): preHandlerHookHandler {
  // Typed callers cannot get here with a typo; casts and plain JS can, and a guard that no credential
  // can ever satisfy would fail quietly at request time.
  if (!isScope(scope))
    throw new Error(
      `requireScope: unknown scope "${String(scope)}"; src/scopes.ts declares ${SCOPES.join(', ')}`,
    );
  return (request, _reply, done) => {
    const principal = request.principal;
    if (principal === null) return done(unauthorized(false));
    if (!principal.scopes.includes(scope)) return done(forbidden(scope));
    done();
  };
}
