SELECT id::text, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason
FROM webhook_subscriptions ORDER BY created_at, id
