// Owns the audit_log table (an append-only record of security events) and the audit of repeated failures.
import type { FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Pool } from 'pg';

export type AuditAction =
  | 'api_key.created'
  | 'api_key.revoked'
  | 'token.issued'
  | 'token.revoked'
  | 'auth.repeated_failures';

export interface AuditEvent {
  action: AuditAction;
  subject?: string | null;
  apiKeyId?: string | null;
  requestId?: string | null;
  clientAddress?: string | null;
  details?: Record<string, unknown>;
}

/** An event recorded during a request: the request id and client address are taken from it. */
export type RequestAuditEvent = Omit<AuditEvent, 'requestId' | 'clientAddress'>;

export function createAuditRepository(db: Pool) {
  return {
    async record(event: AuditEvent): Promise<void> {
      await db.query(
        `INSERT INTO audit_log (action, subject, api_key_id, request_id, client_address, details)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          event.action,
          event.subject ?? null,
          event.apiKeyId ?? null,
          event.requestId ?? null,
          event.clientAddress ?? null,
          JSON.stringify(event.details ?? {}),
        ],
      );
    },
  };
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;

export function createAudit(db: Pool, failureThreshold: number) {
  const repository = createAuditRepository(db);

  async function audit(request: FastifyRequest, event: RequestAuditEvent): Promise<void> {
    await repository.record({ ...event, requestId: request.id, clientAddress: request.ip });
  }

  // Repeated failures from one address become one audit event per minute.
  const failureCounts = new LRUCache<string, { count: number; since: number; reported: boolean }>({
    max: 10_000,
  });

  function failed(request: FastifyRequest, reason: string): void {
    const now = Date.now();
    const ip = request.ip;
    let entry = failureCounts.get(ip);
    if (!entry || now - entry.since > 60_000) {
      entry = { count: 0, since: now, reported: false };
      failureCounts.set(ip, entry);
    }
    entry.count++;
    if (entry.count >= failureThreshold && !entry.reported) {
      entry.reported = true;
      request.log.warn({ failures: entry.count }, 'repeated authentication failures');
      audit(request, {
        action: 'auth.repeated_failures',
        details: { failures: entry.count, lastReason: reason },
      }).catch((err: unknown) => request.log.error({ err }, 'audit write failed'));
    }
  }

  return { audit, failed };
}
