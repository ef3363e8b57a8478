-- The W3C traceparent of the submission (tracing on): the spans of a task's attempts join
-- the submitter's trace. No default, no rewrite.
ALTER TABLE tasks ADD COLUMN traceparent text;
