-- ?1: JSON array of ids. State and attempt of each, as ONE row holding a JSON array of
-- [id, state, attempt] (one sqlite3_step, so one GIL hand-over, whatever the batch size).
SELECT json_group_array(json_array(id, state, attempt)) FROM tasks
WHERE id IN (SELECT value FROM json_each(?1))
