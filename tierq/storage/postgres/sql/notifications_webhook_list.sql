SELECT id::text, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason, tenant
FROM webhook_subscriptions WHERE $1::text IS NULL OR tenant = $1 ORDER BY created_at, id
