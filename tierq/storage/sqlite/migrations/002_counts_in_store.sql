-- Version 2: task_state_counts is maintained by the store, inside the same write transaction
-- as the change it counts (tierq/storage/sqlite/writes.py), instead of by per-row triggers.
-- Exact because one process owns the file and every write runs on its one writer thread.
-- The triggers cost about 2 us per insert and 3 us per transition, most of a writer's time.
DROP TRIGGER IF EXISTS tasks_count_insert;
DROP TRIGGER IF EXISTS tasks_count_update;

-- tasks_delete (001) still keeps the counts on DELETE: no hot path deletes.

-- Leased tasks are reached through tasks_state_id instead (release and recovery filter on the
-- live states, and terminal tasks hold no lease), so an insert leased to its process and its
-- finishing transition no longer add and remove an index entry each.
DROP INDEX IF EXISTS tasks_lease_owner;

-- Start from exact numbers (a one-time scan at upgrade).
UPDATE task_state_counts
SET n = (SELECT count(*) FROM tasks WHERE tasks.state = task_state_counts.state);
