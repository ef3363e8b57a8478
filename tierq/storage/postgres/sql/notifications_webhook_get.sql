SELECT id::text, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason
FROM webhook_subscriptions WHERE id = $1::uuid
