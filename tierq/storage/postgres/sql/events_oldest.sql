SELECT min(cursor) FROM events
