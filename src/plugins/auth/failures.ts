// Owns authentication failures: their reasons, the 401/403 problems and the attempt/failure metrics.
import type { FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { HttpProblem } from '../../lib/problem.ts';

export type FailureReason =
  | 'missing'
  | 'malformed'
  | 'ambiguous'
  | 'oversized'
  | 'unknown_key'
  | 'wrong_secret'
  | 'revoked'
  | 'expired'
  | 'not_yet_valid'
  | 'invalid_signature'
  | 'invalid_algorithm'
  | 'invalid_claims'
  | 'invalid_token';

/** The credential method a failure is counted under: `none` until the credential's kind is known. */
export type AuthMethod = 'none' | 'api_key' | 'jwt';

/** Ends verification: counts the failure and throws the 401. */
export type Fail = (request: FastifyRequest, method: AuthMethod, reason: FailureReason) => never;

/** One body for every authentication failure: it never tells whether a key exists. */
export function unauthorized(withError: boolean): HttpProblem {
  return new HttpProblem(401, 'unauthorized', 'Unauthorized', {
    detail: 'Missing or invalid credentials.',
    headers: {
      'www-authenticate': withError ? 'Bearer realm="api", error="invalid_token"' : 'Bearer realm="api"',
    },
  });
}

export function forbidden(scope: string): HttpProblem {
  return new HttpProblem(403, 'forbidden', 'Forbidden', {
    detail: `This credential lacks the required scope: ${scope}.`,
    headers: { 'www-authenticate': `Bearer realm="api", error="insufficient_scope", scope="${scope}"` },
  });
}

export function createFailures(
  registry: Registry,
  onFailure: (request: FastifyRequest, reason: FailureReason) => void,
) {
  const attempts = new Counter({
    name: 'auth_attempts_total',
    help: 'Authentication attempts by credential method and result.',
    labelNames: ['method', 'result'] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: 'auth_failures_total',
    help: 'Authentication failures by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const success = {
    api_key: attempts.labels('api_key', 'success'),
    jwt: attempts.labels('jwt', 'success'),
  };

  const fail: Fail = (request, method, reason) => {
    attempts.labels(method, 'failure').inc();
    failures.labels(reason).inc();
    onFailure(request, reason);
    throw unauthorized(reason !== 'missing');
  };
  return { fail, succeeded: (method: 'api_key' | 'jwt') => success[method].inc() };
}
