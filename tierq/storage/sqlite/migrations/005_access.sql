-- Version 5: access control. API keys (only hashes of their secrets) and the audit log.
--
-- A key is found by the SHA-256 of the secret a client presents: its current secret
-- (secret_hash) or, during a rotation, the one before it (previous_hash, until
-- previous_until). Both are unique, so one hash names at most one key.
-- The placeholder tables of version 1 were never used: replaced.
DROP INDEX IF EXISTS audit_log_target;
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS api_keys;
CREATE TABLE api_keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    tenant         TEXT    NOT NULL,
    secret_hash    TEXT    NOT NULL UNIQUE,
    prefix         TEXT    NOT NULL,
    created_at     REAL    NOT NULL,
    expires_at     REAL,
    last_used_at   REAL,
    revoked_at     REAL,
    previous_hash  TEXT UNIQUE,
    previous_until REAL,
    rate_limits    BLOB              -- JSON, per route class: {"submit": {"per_second", "burst"}}
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Append-only. seq is assigned by the writer (last seq + 1) in the transaction that links
-- the row to the one before it: hash = SHA-256(prev_hash || canonical JSON of the row).
CREATE TABLE audit_log (
    seq           INTEGER NOT NULL PRIMARY KEY,
    at            REAL    NOT NULL,
    actor         TEXT    NOT NULL,
    tenant        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT,
    request_id    TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    changes       BLOB,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
