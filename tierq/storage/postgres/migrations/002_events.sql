-- The event log when the record store is PostgreSQL and there is no Redis. One row per
-- published batch: its events are the JSON array in body, with cursors last - n + 1 .. last.
CREATE TABLE event_batches (
    last bigint PRIMARY KEY,      -- cursor of the batch's newest event
    n    integer NOT NULL,        -- events in the batch
    at   double precision NOT NULL,
    body bytea NOT NULL
);
-- seq: the newest cursor handed out; trimmed_through: the newest cursor trimming removed.
CREATE TABLE events_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
