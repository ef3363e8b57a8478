SELECT last - n + 1 FROM event_batches ORDER BY last LIMIT 1
