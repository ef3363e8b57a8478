-- Which task holds each idempotency key, per tenant (after an insert skipped some rows).
SELECT idempotency_key, tenant, id FROM tasks WHERE idempotency_key = ANY($1::text[])
