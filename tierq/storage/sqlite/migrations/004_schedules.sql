-- Schedules (cron and fixed-rate). The placeholder table of 001 was never used: replaced.
--
-- A schedule's definition is one JSON document (``spec``: the ScheduleSpec of
-- tierq/engine/schedules/spec.py); the columns beside it are what the scheduler changes and
-- what queries filter on. ``version`` grows with every edit: a fire carries the version it
-- was computed from and the tick it follows (``last_tick``), and is refused when either has
-- changed (a stale leader, or a definition edited meanwhile), so one tick is fired once.
DROP INDEX IF EXISTS schedules_due;
DROP TABLE IF EXISTS schedules;
CREATE TABLE schedules (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant       TEXT    NOT NULL DEFAULT 'default',
    name         TEXT    NOT NULL,
    spec         BLOB    NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL DEFAULT 1,
    last_tick    REAL,               -- the latest tick handled (fired or skipped)
    runs         INTEGER NOT NULL DEFAULT 0,   -- ticks fired (max_runs counts these)
    failures     INTEGER NOT NULL DEFAULT 0,   -- consecutive runs that ended failed
    last_task_id TEXT,               -- the task of the latest fired tick
    next_fire_at REAL,               -- the next tick, NULL when there is none
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    UNIQUE (tenant, name)
);
-- Changes since a time: how a leader catches up with edits it was not told about.
CREATE INDEX schedules_updated ON schedules (updated_at);

-- Ticks that did not fire, and why (overlap, paused, window, missed, failures).
CREATE TABLE schedule_skips (
    schedule_id TEXT NOT NULL,
    tick        REAL NOT NULL,
    at          REAL NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (schedule_id, tick)
) WITHOUT ROWID;
CREATE INDEX schedule_skips_at ON schedule_skips (at);

-- The tasks a schedule fired: the run history is read from here (the task is the run).
ALTER TABLE tasks ADD COLUMN schedule_id TEXT;
ALTER TABLE tasks ADD COLUMN scheduled_for REAL;
CREATE INDEX tasks_schedule ON tasks (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;
