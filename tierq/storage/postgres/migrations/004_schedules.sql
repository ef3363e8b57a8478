-- Schedules (cron and fixed-rate). The placeholder table of 001 was never used: replaced.
--
-- A schedule's definition is one JSON document (``spec``: the ScheduleSpec of
-- tierq/engine/schedules/spec.py); the columns beside it are what the scheduler changes and
-- what queries filter on. ``version`` grows with every edit: a fire carries the version it
-- was computed from and the tick it follows (``last_tick``), and is refused when either has
-- changed (a stale leader, or a definition edited meanwhile), so one tick is fired once.
-- Times are seconds since the Unix epoch (double precision), like the notification tables.
DROP TABLE IF EXISTS schedules;
CREATE TABLE schedules (
    id           text PRIMARY KEY,
    tenant       text NOT NULL DEFAULT 'default',
    name         text NOT NULL,
    spec         json NOT NULL,   -- json: the template payload comes back byte for byte
    paused       boolean NOT NULL DEFAULT false,
    version      integer NOT NULL DEFAULT 1,
    last_tick    double precision,
    runs         integer NOT NULL DEFAULT 0,
    failures     integer NOT NULL DEFAULT 0,
    last_task_id uuid,
    next_fire_at double precision,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    UNIQUE (tenant, name)
);
CREATE INDEX schedules_updated ON schedules (updated_at);

CREATE TABLE schedule_skips (
    schedule_id text NOT NULL,
    tick        double precision NOT NULL,
    at          double precision NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (schedule_id, tick)
);
CREATE INDEX schedule_skips_at ON schedule_skips (at);

ALTER TABLE tasks ADD COLUMN schedule_id text;
ALTER TABLE tasks ADD COLUMN scheduled_for timestamptz;
CREATE INDEX tasks_schedule_idx ON tasks (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

-- Fencing tokens of the scheduler's leader lease (postgres/leader.py), when replicas share
-- this database without Redis.
CREATE SEQUENCE schedule_leader_fence;
