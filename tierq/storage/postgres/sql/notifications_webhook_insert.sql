INSERT INTO webhook_subscriptions
    (id, url, secret, events, queue, type, enabled, created_at, updated_at, description,
     disabled_reason, tenant)
VALUES ($1::uuid, $2, $3, $4::text[], $5, $6, $7, $8, $9, $10, $11, $12)
