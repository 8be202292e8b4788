// Owns scope guards: the preHandler behind app.requireScope, which refuses an undeclared scope at start-up
// and carries its scope, so what a route requires can be read from the route itself (OpenAPI `security`).
import type { preHandlerHookHandler, RouteOptions } from 'fastify';
import { isScope, SCOPES, type Scope } from '../../scopes.ts';
import { forbidden, unauthorized } from './failures.ts';

const REQUIRED_SCOPE = Symbol('requiredScope');

/** A guard answering 403 unless the principal holds its scope; the scope rides on the function. */
export type ScopeGuard = preHandlerHookHandler & { readonly [REQUIRED_SCOPE]: Scope };

export function requireScope(scope: Scope): ScopeGuard {
  // Typed callers cannot get here with a typo; casts and plain JS can, and a guard that no credential
  // can ever satisfy would fail quietly at request time.
  if (!isScope(scope))
    throw new Error(
      `requireScope: unknown scope "${String(scope)}"; src/scopes.ts declares ${SCOPES.join(', ')}`,
    );
  const guard: preHandlerHookHandler = (request, _reply, done) => {
    const principal = request.principal;
    if (principal === null) return done(unauthorized(false));
    if (!principal.scopes.includes(scope)) return done(forbidden(scope));
    done();
  };
  return Object.assign(guard, { [REQUIRED_SCOPE]: scope });
}

/** The scopes a route's guards require, in order (none when it has no guard). */
export function requiredScopes(route: Pick<RouteOptions, 'preHandler'>): Scope[] {
  const hooks: unknown[] = route.preHandler === undefined ? [] : [route.preHandler].flat();
  return hooks.flatMap((hook) =>
    typeof hook === 'function' && REQUIRED_SCOPE in hook ? [(hook as ScopeGuard)[REQUIRED_SCOPE]] : [],
  );
}
