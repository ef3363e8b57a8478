-- Version 8: the X-Request-ID of the request that submitted a task (logs, http calls and
-- webhooks of its attempts carry it).
ALTER TABLE tasks ADD COLUMN request_id TEXT;
