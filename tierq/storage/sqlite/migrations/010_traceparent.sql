-- Version 10: the W3C traceparent of the submission (tracing on): the spans of a task's
-- attempts join the submitter's trace.
ALTER TABLE tasks ADD COLUMN traceparent TEXT;
