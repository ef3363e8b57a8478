-- The newest cursor handed out (trimmed or not): the sequence, not max(cursor).
SELECT CASE WHEN is_called THEN last_value END FROM events_cursor_seq
