-- Version 7: flow control. Queue controls (paused, max_running, rate) survive restarts here;
-- a queue without a row has the configured defaults.
CREATE TABLE queue_controls (
    queue       TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    max_running INTEGER,
    rate_limit  INTEGER,
    rate_per_s  REAL,
    updated_at  REAL NOT NULL
);

-- The answer of a bulk operation (cancel or retry by filter) per Idempotency-Key, so a
-- retried call repeats the answer instead of the operation.
CREATE TABLE bulk_operations (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    answer     BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- A task may name the circuit breaker it answers to (default: its type, or an http target's
-- host).
ALTER TABLE tasks ADD COLUMN breaker TEXT;
