// Owns authenticating a request: reading its one credential (Authorization or X-API-Key) and sending it
// to the verifier for its kind.
import type { FastifyRequest } from 'fastify';
import type { Config } from '../../config.ts';
import type { Fail } from './failures.ts';
import type { Principal } from './principal.ts';

type Verify = (request: FastifyRequest, credential: string) => Promise<Principal>;

function countHeader(request: FastifyRequest, name: string): number {
  const raw = request.raw.rawHeaders;
  let n = 0;
  for (let i = 0; i < raw.length; i += 2)
    if ((raw[i] as string).length === name.length && (raw[i] as string).toLowerCase() === name) n++;
  return n;
}

export function createAuthenticator(config: Config, fail: Fail, verify: { apiKey: Verify; jwt: Verify }) {
  const maxHeader = config.JWT_MAX_TOKEN_BYTES + 7; // "Bearer " + token
  const apiKeyStart = `${config.API_KEY_PREFIX}_`;

  /** Sets request.principal, or throws the 401. */
  return async function authenticate(request: FastifyRequest): Promise<void> {
    const authorization = request.headers.authorization;
    const apiKeyHeader = request.headers['x-api-key'];
    if (authorization === undefined && apiKeyHeader === undefined) fail(request, 'none', 'missing');
    if (authorization !== undefined && apiKeyHeader !== undefined) fail(request, 'none', 'ambiguous');

    let credential: string;
    if (authorization !== undefined) {
      if (authorization.length > maxHeader) fail(request, 'none', 'oversized');
      // Node keeps only the first of duplicated Authorization headers; refuse instead of guessing.
      if (countHeader(request, 'authorization') > 1) fail(request, 'none', 'ambiguous');
      if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ')
        fail(request, 'none', 'malformed');
      credential = authorization.slice(7);
    } else {
      if (typeof apiKeyHeader !== 'string' || apiKeyHeader.length > maxHeader)
        fail(request, 'api_key', 'malformed');
      credential = apiKeyHeader;
    }

    if (credential.startsWith(apiKeyStart)) {
      request.principal = await verify.apiKey(request, credential);
    } else if (authorization !== undefined) {
      request.principal = await verify.jwt(request, credential);
    } else {
      fail(request, 'api_key', 'malformed'); // X-API-Key carries API keys only
    }
  };
}
