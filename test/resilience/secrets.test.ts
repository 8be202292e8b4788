import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { buildTestApp } from '../helpers/app.ts';
import { createKey, signToken } from '../helpers/auth.ts';
import { TEST_REDIS_URL } from '../helpers/env.ts';
import { notes } from '../helpers/notes.ts';

describe('secrets never leak', () => {
  it('when requests carry a bearer token, an API key and a password, then none of them appears in logs, metrics or responses', async () => {
    const t = await buildTestApp({ extend: notes() });
    try {
      const { key } = await createKey(t.app, ['admin']);
      const token = signToken(t.app, { sub: 'leaky' });
      const password = 'correct-horse-battery-staple-42';
      const bodies: string[] = [];
      const collect = (res: request.Response) => {
        bodies.push(res.text, JSON.stringify(res.headers));
        return res;
      };
      collect(await request(t.app.server).get('/v1/me').set('authorization', `Bearer ${token}`));
      collect(await request(t.app.server).get('/v1/me').set('x-api-key', key));
      collect(
        await request(t.app.server).post('/v1/notes').set('x-api-key', key).send({ name: 'x', password }),
      );
      collect(
        await request(t.app.server)
          .post('/v1/notes')
          .set('x-api-key', key)
          .send({ name: 'x', secret: password, token }),
      );
      collect(await request(t.app.server).get(`/v1/me?access_token=${token}&api_key=${key}`));
      collect(await request(t.app.server).get('/v1/me').set('x-api-key', `${key}x`));
      collect(await request(t.app.server).post('/v1/auth/revoke').set('x-api-key', key).send({ token }));
      const metrics = (await request(t.app.server).get('/metrics')).text;
      const haystacks = { logs: t.logs.text(), metrics, responses: bodies.join('\n') };
      const secret = key.split('_').slice(2).join('_'); // the secret may hold '_'
      for (const [where, text] of Object.entries(haystacks)) {
        for (const needle of [token, key, secret, password]) {
          // On failure, name the lines that carried it (the secret itself masked) so the leak can be traced.
          const leaks = text
            .split('\n')
            .filter((line) => line.includes(needle))
            .map((line) => line.replaceAll(needle, '<SECRET>').slice(0, 2000));
          expect(leaks, `${where} contains a secret`).toEqual([]);
        }
      }
    } finally {
      await t.close();
    }
  });

  it('when the database URL carries a password and the database is unreachable, then the password is in no log line or response', async () => {
    const dbPassword = 'pg-password-do-not-print';
    const t = await buildTestApp({
      redis: false,
      env: {
        DATABASE_URL: `postgres://app:${dbPassword}@127.0.0.1:1/app`,
        DATABASE_CONNECT_TIMEOUT_MS: '200',
      },
    });
    try {
      const responses = [
        await request(t.app.server).get('/ready'),
        await request(t.app.server)
          .get('/v1/me')
          .set('x-api-key', 'sk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
        await request(t.app.server).get('/metrics'),
      ];
      expect(responses[0]?.status).toBe(503);
      expect(responses[1]?.status).toBe(503);
      const text = t.logs.text() + responses.map((r) => r.text + JSON.stringify(r.headers)).join('\n');
      expect(text).not.toContain(dbPassword);
      expect(t.logs.text()).toContain('database'); // the failure itself is logged
    } finally {
      await t.close();
    }
  });

  it('when Redis refuses the password in REDIS_URL, then the password is in no log line', async () => {
    const redisPassword = 'redis-password-do-not-print';
    const url = new URL(TEST_REDIS_URL);
    url.username = 'nobody';
    url.password = redisPassword;
    const t = await buildTestApp({ env: { REDIS_URL: url.toString(), REDIS_CONNECT_TIMEOUT_MS: '300' } });
    try {
      expect(t.logs.text()).toContain('redis unavailable'); // the refusal itself is logged, with its error
      expect(t.logs.text()).not.toContain(redisPassword);
    } finally {
      await t.close();
    }
  });
});
