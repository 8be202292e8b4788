// Owns Idempotency-Key for routes that declare `config: { idempotency: true }`: a retry replays the
// first response instead of repeating the write, on any instance, for 24 h.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import type pg from 'pg';
import { z } from 'zod';
import { HttpProblem } from '../lib/problem.ts';
import { appendRouteHook } from '../lib/route-hooks.ts';
import { beginTransaction } from '../lib/transaction.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Accept an Idempotency-Key header on this (authenticated, writing) route. */
    idempotency?: boolean;
  }
}

export const IDEMPOTENCY_TTL_HOURS = 24;
const SWEEP_MS = 3_600_000;
/** Response headers replayed with the stored body. */
const REPLAYED_HEADERS = ['content-type', 'location', 'etag'] as const;

/** Printable ASCII without spaces, at most 255 characters, as the Idempotency-Key draft expects. */
const IdempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
  .describe(
    `A unique value per intended write (a UUID): a retry with the same key and request gets the first response again (for ${IDEMPOTENCY_TTL_HOURS} h); with another request, 422.`,
  );

/** One key belongs to one subject, method and route: the same key sent elsewhere is another request. */
interface KeyId {
  subject: string;
  method: string;
  route: string;
  key: string;
}

interface Stored {
  requestHash: Buffer;
  statusCode: number | null;
  headers: Record<string, string> | null;
  body: string | null;
}

const KEY_COLUMNS = 'subject = $1 AND method = $2 AND route = $3 AND key = $4';
const keyParams = (id: KeyId) => [id.subject, id.method, id.route, id.key];

/**
 * Claims the key in the caller's transaction. A concurrent claim of the same key waits on the
 * primary key until that transaction ends, then sees its stored response. Expired keys are reclaimed.
 */
async function claim(db: pg.PoolClient, id: KeyId, requestHash: Buffer): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO idempotency_keys (subject, method, route, key, request_hash, expires_at)
     VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6))
     ON CONFLICT (subject, method, route, key) DO UPDATE SET
       request_hash = EXCLUDED.request_hash, status_code = NULL, headers = NULL, body = NULL,
       created_at = now(), expires_at = EXCLUDED.expires_at
     WHERE idempotency_keys.expires_at < now()`,
    [...keyParams(id), requestHash, IDEMPOTENCY_TTL_HOURS],
  );
  return rowCount === 1;
}

async function find(db: pg.PoolClient, id: KeyId): Promise<Stored | null> {
  const { rows } = await db.query<Stored>(
    `SELECT request_hash AS "requestHash", status_code AS "statusCode", headers, body
     FROM idempotency_keys WHERE ${KEY_COLUMNS}`,
    keyParams(id),
  );
  return rows[0] ?? null;
}

async function complete(db: pg.PoolClient, id: KeyId, reply: FastifyReply, body: string): Promise<void> {
  const headers: Record<string, string> = {};
  for (const name of REPLAYED_HEADERS) {
    const value = reply.getHeader(name);
    if (value !== undefined) headers[name] = String(value);
  }
  await db.query(
    `UPDATE idempotency_keys SET status_code = $5, headers = $6, body = $7 WHERE ${KEY_COLUMNS}`,
    [...keyParams(id), reply.statusCode, headers, body],
  );
}

/** The path, query and validated body: equivalent JSON (key order, whitespace) hashes the same. */
const fingerprint = (request: FastifyRequest) =>
  createHash('sha256')
    .update(JSON.stringify([request.url, request.body ?? null]))
    .digest();

/** Adds the header to the route's schema: validated like any header, and documented in OpenAPI. */
function withKeyHeader(route: RouteOptions): void {
  const headers = route.schema?.headers;
  const key = { 'idempotency-key': IdempotencyKey.optional() };
  if (headers !== undefined && !(headers instanceof z.ZodObject))
    throw new Error(`${route.method} ${route.url}: idempotency needs a zod object (or no) headers schema`);
  route.schema = { ...route.schema, headers: headers ? headers.extend(key) : z.looseObject(key) };
}

async function idempotencyPlugin(app: FastifyInstance) {
  const keys = new WeakMap<FastifyRequest, KeyId>();

  async function start(request: FastifyRequest, reply: FastifyReply, route: string) {
    const key = request.headers['idempotency-key'];
    if (typeof key !== 'string' || request.principal === null) return;
    const id: KeyId = { subject: request.principal.subject, method: request.method, route, key };
    const requestHash = fingerprint(request);
    const tx = await beginTransaction(app.db);
    let stored: Stored | null;
    try {
      if (await claim(tx.client, id, requestHash)) {
        // The route's writes join this transaction (request.db); it commits with the stored response.
        request.transaction = tx;
        keys.set(request, id);
        return;
      }
      stored = await find(tx.client, id);
    } finally {
      if (request.transaction !== tx) await tx.rollback();
    }
    if (stored === null || stored.statusCode === null || stored.body === null)
      throw new HttpProblem(409, 'conflict', 'Conflict', {
        detail: 'A request with this Idempotency-Key is in progress.',
      });
    if (!stored.requestHash.equals(requestHash))
      throw new HttpProblem(422, 'idempotency-key-reused', 'Unprocessable Content', {
        detail: 'This Idempotency-Key was used with a different request.',
      });
    return reply
      .code(stored.statusCode)
      .headers({ ...stored.headers, 'idempotent-replayed': 'true' })
      .send(stored.body);
  }

  /** A success is stored and committed with the route's writes; anything else rolls both back. */
  async function finish(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const tx = request.transaction;
    const id = keys.get(request);
    if (tx === null || id === undefined) return payload;
    request.transaction = null;
    keys.delete(request);
    const body = payload == null ? '' : typeof payload === 'string' ? payload : undefined;
    if (reply.statusCode >= 300 || body === undefined) {
      if (body === undefined) request.log.warn('idempotency: the response is not text; not stored');
      await tx.rollback();
      return payload;
    }
    try {
      await complete(tx.client, id, reply, body);
    } catch (err) {
      await tx.rollback();
      throw err;
    }
    // A failed COMMIT throws: the client gets an error, never a success that was not saved.
    await tx.commit();
    return payload;
  }

  app.addHook('onRoute', (route) => {
    if (!route.config?.idempotency) return;
    withKeyHeader(route);
    const path = route.url;
    // After the route's own preHandlers (its scope guard): only an authorized request claims a key.
    appendRouteHook(route, 'preHandler', (request, reply) => start(request, reply, path));
    appendRouteHook(route, 'onSend', finish);
  });

  // Expired keys are deleted hourly by whichever instance gets there.
  const sweep = setInterval(() => {
    app.db
      .query('DELETE FROM idempotency_keys WHERE expires_at < now()')
      .catch((err: unknown) => app.log.warn({ err }, 'idempotency sweep failed'));
  }, SWEEP_MS);
  sweep.unref();
  app.addHook('onClose', async () => clearInterval(sweep));
}

export default fp(idempotencyPlugin, { name: 'idempotency', dependencies: ['postgres', 'auth'] });
