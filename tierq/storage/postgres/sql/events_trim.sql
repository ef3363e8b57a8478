-- Drop events older than $1 and beyond the newest $2; record the newest cursor removed.
WITH bound AS (
    SELECT greatest(
        coalesce((SELECT max(cursor) FROM events WHERE at < $1), 0),
        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_cursor_seq) - $2
    ) AS through
), gone AS (
    DELETE FROM events WHERE cursor <= (SELECT through FROM bound) RETURNING cursor
)
INSERT INTO events_meta (key, value)
SELECT 'trimmed_through', max(cursor) FROM gone HAVING count(*) > 0
ON CONFLICT (key) DO UPDATE SET value = greatest(events_meta.value, excluded.value)
