-- Up Migration

-- API keys: only a SHA-256 hash of the 256-bit secret is stored. A fast hash is right here: the
-- secret is random, so there is nothing for a slow password hash to protect against.
CREATE TABLE api_keys (
  id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
  name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  subject       text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
  scopes        text[] NOT NULL DEFAULT '{}',
  secret_hash   bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX api_keys_subject_idx ON api_keys (subject, created_at DESC);

-- Security events: who did what, from where, in which request.
CREATE TABLE audit_log (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at     timestamptz NOT NULL DEFAULT now(),
  action          text NOT NULL,
  subject         text,
  api_key_id      text,
  request_id      text,
  client_address  text,
  details         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, occurred_at);

-- Down Migration
DROP TABLE audit_log;
DROP TABLE api_keys;
