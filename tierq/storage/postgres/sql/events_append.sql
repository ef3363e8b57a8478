-- One batch ($1 events, newest at $2, JSON array $3), numbered on from seq. The update of the
-- seq row holds its lock until commit, so batches commit in cursor order: a reader that has
-- seen cursor c never later finds a lower one appear.
WITH numbered AS (
    INSERT INTO events_meta (key, value) VALUES ('seq', $1)
    ON CONFLICT (key) DO UPDATE SET value = events_meta.value + excluded.value
    RETURNING value
)
INSERT INTO event_batches (last, n, at, body) SELECT value, $1, $2, $3 FROM numbered
