SELECT last, n, body FROM event_batches WHERE last > $1 ORDER BY last LIMIT $2
