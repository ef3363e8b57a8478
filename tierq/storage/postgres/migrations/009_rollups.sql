-- Per-minute rollups of finished tasks, appended by each replica (storage/rollups.py).
CREATE TABLE task_rollups (
    minute bigint NOT NULL,
    node text NOT NULL,
    tenant text NOT NULL,
    body text NOT NULL
);
CREATE INDEX task_rollups_minute ON task_rollups (minute);
