-- The scheduler's leader lease: a session-level advisory lock, held as long as this
-- connection lives (a process that dies loses it with its connection). $1: the lock key.
SELECT pg_try_advisory_lock($1)
