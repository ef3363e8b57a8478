-- ?1: JSON array of ids, ?2: JSON array of states. How many of those tasks are in each of
-- those states: the old states of a set-based UPDATE with the same WHERE (cancel, retry),
-- read first in the same write transaction so the counts can follow it exactly.
SELECT state, count(*) FROM tasks
WHERE id IN (SELECT value FROM json_each(?1))
  AND state IN (SELECT value FROM json_each(?2))
GROUP BY state
