import type { JWT } from '@fastify/jwt';
import type { Counter } from 'prom-client';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/plugins/auth.ts';
import { buildTestApp, type TestApp } from './helpers/app.ts';
import { signToken } from './helpers/auth.ts';

const NOW = () => Math.floor(Date.now() / 1000);
const RETIRED_SECRET = `${'r'.repeat(20)}etired-secret-0123456789`;

// Verification runs through each key's @fastify/jwt namespace, with the options given at registration.
describe('jwt verification through @fastify/jwt', () => {
  let t: TestApp;
  let current: string;
  let retired: string;
  const alice: Principal = { subject: 'alice', scopes: [], kind: 'jwt', keyId: null, tokenId: null };
  beforeAll(async () => {
    t = await buildTestApp({ redis: false, env: { JWT_VERIFY_SECRETS: RETIRED_SECRET } });
    [current, retired] = t.app.auth.jwtKeys.map((k) => k.kid) as [string, string];
  });
  afterAll(() => t.close());

  const namespace = (kid: string) => (t.app.jwt as unknown as Record<string, JWT>)[kid] as JWT;
  const me = (token: string) => request(t.app.server).get('/v1/me').set('authorization', `Bearer ${token}`);
  const failures = async (reason: string) => {
    const counter = t.app.metrics.registry.getSingleMetric('auth_failures_total') as Counter;
    return (await counter.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  };

  it('when a token is verified again, then fast-jwt’s cache answers with the same claims, and a one-character change fails', () => {
    const token = t.app.auth.issueToken(alice, ['openid']).accessToken;
    const first = namespace(current).verify<{ sub: string }>(token);
    expect(first.sub).toBe('alice');
    expect(namespace(current).verify(token)).toBe(first);
    const at = token.lastIndexOf('.') + 1; // the signature's first character carries six full bits
    const tampered = token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
    expect(() => namespace(current).verify(tampered)).toThrow(
      expect.objectContaining({ code: 'FAST_JWT_INVALID_SIGNATURE' }),
    );
    expect(() => namespace(retired).verify(token)).toThrow(
      expect.objectContaining({ code: 'FAST_JWT_INVALID_SIGNATURE' }),
    );
  });

  it('when tokens name a retired or an unknown key id, then the retired one verifies and the unknown one fails', async () => {
    const byRetired = signToken(t.app, {}, { key: RETIRED_SECRET, header: { kid: retired } });
    expect((await me(byRetired)).status).toBe(200);
    const before = await failures('invalid_signature');
    expect((await me(signToken(t.app, {}, { header: { kid: 'hs-unknown' } }))).status).toBe(401);
    expect(await failures('invalid_signature')).toBe(before + 1);
  });

  it.each([
    ['an exp beyond the clock tolerance', 'expired', { exp: NOW() - 60 }, {}],
    ['a signature by another secret', 'invalid_signature', {}, { key: 'x'.repeat(40) }],
    ['an algorithm outside the allowlist', 'invalid_algorithm', {}, { algorithm: 'HS512' }],
    ['no jti', 'invalid_claims', { jti: undefined }, {}],
    ['a wrong audience', 'invalid_claims', { aud: 'other-api' }, {}],
    ['a typ other than JWT', 'malformed', {}, { header: { typ: 'not-jwt' } }],
  ])(
    'when the token has %s, then 401 counted as %s (fast-jwt’s own error code)',
    async (_what, reason, claims, options) => {
      const opts = options as { key?: string; algorithm?: string; header?: Record<string, unknown> };
      const token = signToken(t.app, claims, { ...opts, header: { kid: current, ...opts.header } });
      const before = await failures(reason);
      expect((await me(token)).status).toBe(401);
      expect(await failures(reason)).toBe(before + 1);
    },
  );

  it('when a validly signed token exceeds JWT_MAX_TOKEN_BYTES, then it is refused before it is parsed', async () => {
    const padding = 'p'.repeat(t.config.JWT_MAX_TOKEN_BYTES);
    const token = signToken(t.app, { padding }, { header: { kid: current } });
    expect(() => namespace(current).verify(token)).not.toThrow();
    const before = await failures('oversized');
    expect((await me(token)).status).toBe(401);
    expect(await failures('oversized')).toBe(before + 1);
  });
});
