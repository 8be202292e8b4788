-- Up Migration

-- Idempotency-Key on routes that declare `config: { idempotency: true }` (plugins/idempotency.ts):
-- the first response to a request, replayed to its retries for 24 h. A key belongs to one subject,
-- method and route, so the same key sent to two resources is two requests.
-- Databases migrated by an earlier version hold an idempotency_keys table keyed by (owner, key)
-- only, created with items; it is a replay cache of at most a day, so it is replaced.
DROP TABLE IF EXISTS idempotency_keys;
CREATE TABLE idempotency_keys (
  subject       text NOT NULL,
  method        text NOT NULL,
  route         text NOT NULL,
  key           text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
  request_hash  bytea NOT NULL,
  -- NULL until the first request completes (its transaction holds the row until then).
  status_code   integer,
  headers       jsonb,
  body          text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  PRIMARY KEY (subject, method, route, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- Down Migration
DROP TABLE idempotency_keys;
