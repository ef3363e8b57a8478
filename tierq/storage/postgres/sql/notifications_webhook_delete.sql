DELETE FROM webhook_subscriptions WHERE id = $1::uuid
