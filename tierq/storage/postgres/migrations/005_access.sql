-- Access control: API keys (only hashes of their secrets) and the audit log.
--
-- A key is found by the SHA-256 of the secret a client presents: its current secret
-- (secret_hash) or, during a rotation, the one before it (previous_hash, until
-- previous_until). Both are unique, so one hash names at most one key.
-- The placeholder tables of version 1 were never used: replaced.
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS api_keys;
CREATE TABLE api_keys (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    role           text NOT NULL,
    tenant         text NOT NULL,
    secret_hash    text NOT NULL UNIQUE,
    prefix         text NOT NULL,
    created_at     double precision NOT NULL,
    expires_at     double precision,
    last_used_at   double precision,
    revoked_at     double precision,
    previous_hash  text UNIQUE,
    previous_until double precision,
    rate_limits    text             -- JSON, per route class: {"submit": {"per_second", "burst"}}
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Append-only. seq is assigned by the writer (last seq + 1), the primary key keeping one row
-- per place in the chain (a replica that lost the race reads the last link and tries again);
-- hash = SHA-256(prev_hash || canonical JSON of the row) (tierq/storage/audit.py).
CREATE TABLE audit_log (
    seq           bigint PRIMARY KEY,
    at            double precision NOT NULL,
    actor         text NOT NULL,
    tenant        text NOT NULL,
    role          text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    request_id    text NOT NULL,
    source        text NOT NULL,
    status        integer NOT NULL,
    changes       text,
    prev_hash     text NOT NULL,
    hash          text NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
