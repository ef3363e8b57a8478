SELECT id::text, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason, tenant
FROM webhook_subscriptions WHERE id = $1::uuid AND ($2::text IS NULL OR tenant = $2)
