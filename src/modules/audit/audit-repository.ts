// Owns the audit_log table: an append-only record of security events.
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
