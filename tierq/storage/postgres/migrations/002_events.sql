-- The event log when the record store is PostgreSQL and there is no Redis (one process:
-- appends are serialised in that process, so cursors grow in commit order).
CREATE TABLE events (
    cursor bigserial PRIMARY KEY,
    at     double precision NOT NULL,
    body   bytea NOT NULL
);
CREATE TABLE events_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
