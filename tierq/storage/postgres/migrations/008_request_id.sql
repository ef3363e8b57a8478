-- The X-Request-ID of the request that submitted a task (logs, http calls and webhooks of
-- its attempts carry it). No default, no rewrite.
ALTER TABLE tasks ADD COLUMN request_id text;
