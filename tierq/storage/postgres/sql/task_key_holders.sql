-- Which task holds each idempotency key (after an insert skipped some rows).
SELECT idempotency_key, id FROM tasks WHERE idempotency_key = ANY($1::text[])
