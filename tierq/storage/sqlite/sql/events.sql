-- The embedded event log, in its own file beside the record store (so appends never wait
-- for the record writer's lock). cursor is AUTOINCREMENT: never reused, even after the
-- newest rows were trimmed, so a cursor once handed out never names another event.
-- name: schema
CREATE TABLE IF NOT EXISTS events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    body   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- name: append
INSERT INTO events (at, body) VALUES (?, ?)
-- name: range_after
SELECT cursor, body FROM events WHERE cursor > ? ORDER BY cursor LIMIT ?
-- name: newest
SELECT seq FROM sqlite_sequence WHERE name = 'events'
-- name: oldest
SELECT min(cursor) FROM events
-- name: trimmed_through
SELECT value FROM events_meta WHERE key = 'trimmed_through'
-- name: trim_bound
SELECT max(
    coalesce((SELECT max(cursor) FROM events WHERE at < ?), 0),
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) - ?
)
-- name: trim
DELETE FROM events WHERE cursor <= ?
-- name: record_trim
INSERT INTO events_meta (key, value) VALUES ('trimmed_through', ?)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
