-- tierq record tier, initial schema. Applied by PostgresRecordStore.migrate() in one
-- transaction under an advisory lock; objects land in the store's schema (search_path).

CREATE TABLE tasks (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    queue           text NOT NULL,
    priority        integer NOT NULL,
    state           text NOT NULL CHECK (state IN (
                        'pending', 'scheduled', 'queued', 'running',
                        'succeeded', 'failed', 'cancelled')),
    -- json, not jsonb: the payload must come back byte for byte (jsonb re-serialises), and
    -- json is only validated on insert, which is cheaper than building jsonb.
    payload         json NOT NULL,
    run_at          timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    attempt         integer NOT NULL DEFAULT 0,
    attempt_base    integer NOT NULL DEFAULT 0,
    max_retries     integer NOT NULL,
    timeout_s       double precision NOT NULL,
    name            text,
    description     text,
    -- UNIQUE allows any number of NULLs: only tasks submitted with a key are deduplicated.
    idempotency_key text UNIQUE,
    notify          jsonb,
    result          jsonb,
    last_error      text,
    lease_owner     text,
    depends_on      uuid[] NOT NULL DEFAULT '{}'
);

-- List filters by state, newest first (ids are time-ordered, so id order is creation order).
CREATE INDEX tasks_state_id_idx ON tasks (state, id);
-- Claiming unleased work in run order; only the claimable rows are indexed.
CREATE INDEX tasks_claim_idx ON tasks (priority DESC, run_at, id)
    WHERE lease_owner IS NULL AND state IN ('queued', 'scheduled');
-- Recovery and release: tasks leased by an owner (running ones and those not started yet).
CREATE INDEX tasks_lease_owner_idx ON tasks (lease_owner, state)
    WHERE lease_owner IS NOT NULL;

CREATE TABLE task_dependencies (
    task_id       uuid NOT NULL,
    depends_on_id uuid NOT NULL,
    PRIMARY KEY (task_id, depends_on_id)
);
-- release_dependents looks dependents up by the task that finished.
CREATE INDEX task_dependencies_depends_on_idx ON task_dependencies (depends_on_id);

CREATE TABLE task_executions (
    task_id     uuid NOT NULL,
    attempt     integer NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz,
    outcome     text CHECK (outcome IN (
                    'succeeded', 'failed', 'timed_out', 'cancelled', 'abandoned', 'interrupted')),
    error       text,
    worker      text,
    PRIMARY KEY (task_id, attempt)
);

-- Tasks per state, maintained by the statement-level triggers below so task_counts() never
-- scans tasks. Counters are split into slots (by backend pid) so concurrent transactions from
-- several replicas rarely wait on the same counter row until commit; a state's count is the
-- sum over its slots. Must stay true: sum(n) per state = count(*) of tasks in that state.
CREATE TABLE task_state_counts (
    state text NOT NULL,
    slot  smallint NOT NULL,
    n     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (state, slot)
);

-- One upsert per statement, rows in (state, slot) order so that two statements touching the
-- same counters always lock them in the same order.
CREATE FUNCTION tierq_count_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO task_state_counts (state, slot, n)
    SELECT state, (pg_backend_pid() % 16)::smallint, count(*)
    FROM new_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = task_state_counts.n + excluded.n;
    RETURN NULL;
END $$;

CREATE FUNCTION tierq_count_update() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO task_state_counts (state, slot, n)
    SELECT state, (pg_backend_pid() % 16)::smallint, sum(d)
    FROM (
        SELECT state, 1 AS d FROM new_rows
        UNION ALL
        SELECT state, -1 AS d FROM old_rows
    ) AS delta
    GROUP BY state HAVING sum(d) <> 0 ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = task_state_counts.n + excluded.n;
    RETURN NULL;
END $$;

CREATE FUNCTION tierq_count_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO task_state_counts (state, slot, n)
    SELECT state, (pg_backend_pid() % 16)::smallint, -count(*)
    FROM old_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = task_state_counts.n + excluded.n;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tierq_count_insert();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tierq_count_update();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tierq_count_delete();

-- Replica heartbeats (distributed mode).
CREATE TABLE workers (
    owner          text PRIMARY KEY,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    info           jsonb NOT NULL DEFAULT '{}'
);

-- Room for the roadmap: cron / fixed-rate schedules, audit log, API keys.
CREATE TABLE schedules (
    id          text PRIMARY KEY,
    name        text,
    cron        text,
    interval_s  double precision,
    template    jsonb NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    next_run_at timestamptz,
    last_run_at timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK (cron IS NOT NULL OR interval_s IS NOT NULL)
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text,
    action  text NOT NULL,
    target  text,
    details jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    key_hash     text NOT NULL UNIQUE,
    roles        text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
