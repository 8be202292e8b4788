import { describe, expect, it } from 'vitest';
import { scrubSecrets } from '../src/lib/logger-options.js';

describe('log redaction (scrubSecrets)', () => {
  it('when secret-named fields appear in the logged object or three levels below it, in any case, then they are replaced', () => {
    const input = {
      password: 'p1',
      user: {
        name: 'a',
        Token: 't1',
        profile: { apiKey: 'k1', deeper: { secret: 's1', deepest: { token: 'past the limit' } } },
      },
      list: [{ access_token: 'a1' }, 'plain'],
      headers: { authorization: 'Bearer x', 'x-api-key': 'sk', accept: '*/*' },
    };
    expect(scrubSecrets(input)).toEqual({
      password: '[redacted]',
      user: {
        name: 'a',
        Token: '[redacted]',
        profile: {
          apiKey: '[redacted]',
          deeper: { secret: '[redacted]', deepest: { token: 'past the limit' } },
        },
      },
      list: [{ access_token: '[redacted]' }, 'plain'],
      headers: { authorization: '[redacted]', 'x-api-key': '[redacted]', accept: '*/*' },
    });
  });

  it('when nothing is secret, then the very same object is returned (no copy on the hot path)', () => {
    const line = { method: 'GET', url: '/health', statusCode: 200, durationMs: 1.2 };
    expect(scrubSecrets(line)).toBe(line);
  });

  it("when a field is redacted, then the caller's object is left unchanged", () => {
    const body = { name: 'x', nested: { token: 'keep-me-in-memory' } };
    scrubSecrets({ body });
    expect(body.nested.token).toBe('keep-me-in-memory');
  });

  it('when values are errors, dates or buffers, then they are passed through for their serializers', () => {
    const err = Object.assign(new Error('boom'), { token: 'not-a-plain-object-field' });
    const out = scrubSecrets({ err, at: new Date(0), raw: Buffer.from('x') });
    expect(out.err).toBe(err);
    expect(out.at).toBeInstanceOf(Date);
  });
});
