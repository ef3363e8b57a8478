-- Drop batches older than $1 or wholly beyond the newest $2 events; record the newest cursor
-- removed.
WITH bound AS (
    SELECT greatest(
        coalesce((SELECT max(last) FROM event_batches WHERE at < $1), 0),
        coalesce((SELECT max(last) FROM event_batches
                  WHERE last <= (SELECT value FROM events_meta WHERE key = 'seq') - $2), 0)
    ) AS through
), gone AS (
    DELETE FROM event_batches WHERE last <= (SELECT through FROM bound) RETURNING last
)
INSERT INTO events_meta (key, value)
SELECT 'trimmed_through', max(last) FROM gone HAVING count(*) > 0
ON CONFLICT (key) DO UPDATE SET value = greatest(events_meta.value, excluded.value)
