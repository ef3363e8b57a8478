-- tierq record tier, embedded (SQLite) schema, version 1.
--
-- Times are REAL seconds since the Unix epoch (UTC). JSON values (payload, result, notify)
-- are BLOBs holding JSON bytes exactly as the API received them; depends_on is JSON text.
-- Task ids are UUIDv7 strings: they sort by creation time, so "newest first" and keyset
-- paging walk an index on id instead of sorting.

-- Every task. Column order matters: the store reads rows positionally (tierq/storage/sqlite/
-- rows.py) and every SELECT names the columns in this order.
-- WITHOUT ROWID: the table is clustered on id, so an insert or a transition touches one
-- b-tree for the row instead of a rowid table plus a separate primary-key index.
CREATE TABLE tasks (
    id              TEXT    NOT NULL PRIMARY KEY,
    type            TEXT    NOT NULL,
    queue           TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    run_at          REAL    NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    max_retries     INTEGER NOT NULL,
    timeout_s       REAL    NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    attempt_base    INTEGER NOT NULL DEFAULT 0,
    name            TEXT,
    description     TEXT,
    idempotency_key TEXT,
    depends_on      TEXT,            -- JSON array of task ids, NULL when none
    notify          BLOB,            -- JSON notification targets
    result          BLOB,            -- JSON returned by the handler
    last_error      TEXT,
    started_at      REAL,            -- start of the latest attempt
    finished_at     REAL,            -- when the task reached a terminal state
    lease_owner     TEXT             -- replica holding the task in its memory tier, or NULL
) WITHOUT ROWID;

-- Idempotency: at most one task per key. Partial, so tasks without a key cost nothing here.
CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Claiming. Two disjoint partial indexes: a task is in at most one of them, so together they
-- cost one index entry per claimable task, and each is ordered for its half of the claim
-- query (tierq/storage/sqlite/sql/task_claim.sql, whose WHERE terms must repeat these).
CREATE INDEX tasks_ready ON tasks (priority DESC, run_at, id)
    WHERE lease_owner IS NULL AND state = 'queued';
CREATE INDEX tasks_delayed ON tasks (run_at)
    WHERE lease_owner IS NULL AND state = 'scheduled';

-- List filters by state, newest first / keyset paging by id; recovery of running tasks.
CREATE INDEX tasks_state_id ON tasks (state, id);

-- Leases on tasks not running, for release and start-up recovery (running tasks are found
-- through tasks_state_id). Partial: an insert (unleased) costs nothing here, a task enters at
-- claim and leaves when it starts, and the index holds only what memory tiers hold (bounded).
CREATE INDEX tasks_lease_owner ON tasks (lease_owner)
    WHERE lease_owner IS NOT NULL AND state <> 'running';

-- depends_on, one row per edge, for finding the dependents of a finished task.
CREATE TABLE task_dependencies (
    task_id       TEXT NOT NULL,
    depends_on_id TEXT NOT NULL,
    PRIMARY KEY (task_id, depends_on_id)
) WITHOUT ROWID;
CREATE INDEX task_dependencies_depends_on ON task_dependencies (depends_on_id);

-- One row per attempt. outcome NULL means the attempt is still open (running).
CREATE TABLE task_executions (
    task_id     TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  REAL,
    finished_at REAL,
    outcome     TEXT,
    error       TEXT,
    worker      TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

-- Tasks per state, kept by the triggers below so statistics never scan tasks.
-- Invariant: n = (SELECT count(*) FROM tasks WHERE state = task_state_counts.state).
CREATE TABLE task_state_counts (
    state TEXT    NOT NULL PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO task_state_counts (state, n) VALUES
    ('pending', 0), ('scheduled', 0), ('queued', 0), ('running', 0),
    ('succeeded', 0), ('failed', 0), ('cancelled', 0);

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
BEGIN
    UPDATE task_state_counts SET n = n + 1 WHERE state = NEW.state;
END;

-- Two equality updates, not one "WHERE state IN (OLD.state, NEW.state)": the IN list builds
-- an ephemeral table on every firing and costs about three times as much per transition.
CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE task_state_counts SET n = n - 1 WHERE state = OLD.state;
    UPDATE task_state_counts SET n = n + 1 WHERE state = NEW.state;
END;

-- Deleting a task (DELETE /api/v1/tasks/{id}) takes its history and edges with it.
CREATE TRIGGER tasks_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_state_counts SET n = n - 1 WHERE state = OLD.state;
    DELETE FROM task_executions WHERE task_id = OLD.id;
    DELETE FROM task_dependencies WHERE task_id = OLD.id;
END;

-- ---- room for the roadmap; no store methods use these yet ---------------------------------

-- Cron and fixed-rate schedules. Exactly one of cron / interval_s is set. template is the
-- JSON task a tick submits (type, payload, queue, priority, ...). next_run_at is the next
-- tick; the replica that fires it advances it in the same transaction.
CREATE TABLE schedules (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    cron        TEXT,
    interval_s  REAL,
    timezone    TEXT    NOT NULL DEFAULT 'UTC',
    template    BLOB    NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    next_run_at REAL,
    last_run_at REAL,
    last_task_id TEXT,
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled = 1;

-- Who did what: one row per API action. id order is time order. details is JSON.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       REAL    NOT NULL,
    actor    TEXT,               -- api key id or user, NULL for the system
    action   TEXT    NOT NULL,   -- e.g. task.cancel, task.retry, schedule.create
    target   TEXT,               -- id of the object acted on
    details  BLOB
);
CREATE INDEX audit_log_target ON audit_log (target);

-- API keys: only a hash of the secret is stored. role is one of admin / submitter / reader.
CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    key_hash     TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    rate_limit   REAL,               -- requests per second, NULL = the server default
    created_at   REAL    NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL
);
