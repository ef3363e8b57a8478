-- Flow control. Queue controls (paused, max_running, rate) survive restarts here; a queue
-- without a row has the configured defaults.
CREATE TABLE queue_controls (
    queue       text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    max_running integer,
    rate_limit  integer,
    rate_per_s  double precision,
    updated_at  double precision NOT NULL
);

-- The answer of a bulk operation (cancel or retry by filter) per Idempotency-Key, so a
-- retried call repeats the answer instead of the operation.
CREATE TABLE bulk_operations (
    tenant     text NOT NULL,
    key        text NOT NULL,
    answer     text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- A task may name the circuit breaker it answers to (default: its type, or an http target's
-- host). No default, no rewrite.
ALTER TABLE tasks ADD COLUMN breaker text;
