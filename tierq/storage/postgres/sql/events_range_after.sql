SELECT cursor, body FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2
