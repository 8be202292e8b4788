import { createSigner } from 'fast-jwt';
import { describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../src/lib/jwt-keys.ts';

const key = 'k'.repeat(64);
const options = {
  key,
  algorithms: ['HS256' as const],
  allowedIss: 'iss',
  allowedAud: 'aud',
  requiredClaims: ['exp', 'iss', 'aud', 'sub', 'jti'],
  cache: 100,
};
const sign = createSigner({ key, algorithm: 'HS256', iss: 'iss', aud: 'aud', expiresIn: 60_000 });

describe('createTokenVerifier', () => {
  it('when created, then fast-jwt’s key-builder warning is dropped, and process.emitWarning is restored', async () => {
    const seen: string[] = [];
    const onWarning = (w: Error & { code?: string }) => seen.push(w.code ?? w.message);
    process.on('warning', onWarning);
    const before = process.emitWarning;
    try {
      createTokenVerifier(options);
      expect(process.emitWarning).toBe(before);
      process.emitWarning('still delivered', { code: 'TEST_WARNING' });
      await new Promise((r) => setImmediate(r));
      expect(seen).toEqual(['TEST_WARNING']);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('when tokens are verified, then valid ones pass (repeats from the cache) and a one-character change fails', () => {
    const verify = createTokenVerifier(options);
    const token = sign({ sub: 'alice', jti: 'j1' });
    const first = verify(token) as { sub: string };
    expect(first.sub).toBe('alice');
    expect(verify(token)).toBe(first); // cached: the same claims object
    const other = sign({ sub: 'bob', jti: 'j2' });
    expect((verify(other) as { sub: string }).sub).toBe('bob');
    const at = token.lastIndexOf('.') + 1; // the signature's first character carries six full bits
    const tampered = token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
    expect(() => verify(tampered)).toThrow(/signature/i);
    expect(() => createTokenVerifier({ ...options, key: 'x'.repeat(64) })(token)).toThrow(/signature/i);
  });
});
