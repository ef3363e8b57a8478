-- The embedded event log, in its own file beside the record store (so appends never wait
-- for the record writer's lock). One row per published batch: its events are the JSON array
-- in body, with cursors last - n + 1 .. last.
-- name: schema
CREATE TABLE IF NOT EXISTS event_batches (
    last INTEGER PRIMARY KEY,   -- cursor of the batch's newest event
    n    INTEGER NOT NULL,      -- events in the batch
    at   REAL    NOT NULL,      -- time of its newest event (trimming by age)
    body BLOB    NOT NULL       -- JSON array of events
);
-- seq: the newest cursor handed out; trimmed_through: the newest cursor trimming removed.
CREATE TABLE IF NOT EXISTS events_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- name: seq
SELECT value FROM events_meta WHERE key = 'seq'
-- name: set_seq
INSERT INTO events_meta (key, value) VALUES ('seq', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
-- name: append
INSERT INTO event_batches (last, n, at, body) VALUES (?, ?, ?, ?)
-- name: range_after
SELECT last, n, body FROM event_batches WHERE last > ? ORDER BY last LIMIT ?
-- name: oldest
SELECT last - n + 1 FROM event_batches ORDER BY last LIMIT 1
-- name: trimmed_through
SELECT value FROM events_meta WHERE key = 'trimmed_through'
-- name: trim_bound
-- The newest batch to drop: older than the age bound, or wholly beyond the newest count.
SELECT max(
    coalesce((SELECT max(last) FROM event_batches WHERE at < ?), 0),
    coalesce((SELECT max(last) FROM event_batches WHERE last <= ?), 0)
)
-- name: trim
DELETE FROM event_batches WHERE last <= ?
-- name: record_trim
INSERT INTO events_meta (key, value) VALUES ('trimmed_through', ?)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
