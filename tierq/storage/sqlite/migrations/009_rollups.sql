-- Version 9: per-minute rollups of finished tasks, appended by each replica
-- (storage/rollups.py).
CREATE TABLE task_rollups (
    minute INTEGER NOT NULL,
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX task_rollups_minute ON task_rollups (minute);
