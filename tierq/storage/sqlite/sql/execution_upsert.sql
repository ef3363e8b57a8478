-- Insert the attempt's row when it starts, complete it when it ends; a start and an end
-- reported in one transition arrive together. NULLs never overwrite what is stored.
-- {rows}: groups of 7 parameters (batches.py), one per report, in batch order: the rows of
-- a multi-row VALUES are inserted one after another, so a repeated (task_id, attempt)
-- meets the row its earlier report wrote.
INSERT INTO task_executions (task_id, attempt, started_at, finished_at, outcome, error, worker)
VALUES {rows}
ON CONFLICT (task_id, attempt) DO UPDATE SET
    started_at = coalesce(excluded.started_at, started_at),
    finished_at = coalesce(excluded.finished_at, finished_at),
    outcome = coalesce(excluded.outcome, outcome),
    error = coalesce(excluded.error, error),
    worker = coalesce(excluded.worker, worker)
