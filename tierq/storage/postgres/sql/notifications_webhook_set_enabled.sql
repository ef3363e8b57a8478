UPDATE webhook_subscriptions SET enabled = $2, disabled_reason = $3, updated_at = $4
WHERE id = $1::uuid
RETURNING id::text, url, secret, events, queue, type, enabled, created_at, updated_at,
          description, disabled_reason, tenant
