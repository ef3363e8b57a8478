-- Webhook subscriptions and the delivery index (migrations/003_notifications.sql).
-- name: webhook_insert
INSERT INTO webhook_subscriptions
    (id, url, secret, events, queue, type, enabled, created_at, updated_at, description,
     disabled_reason, tenant)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
-- name: webhook_list
SELECT id, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason, tenant
FROM webhook_subscriptions WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, id
-- name: webhook_get
SELECT id, url, secret, events, queue, type, enabled, created_at, updated_at, description,
       disabled_reason, tenant
FROM webhook_subscriptions WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)
-- name: webhook_set_enabled
UPDATE webhook_subscriptions SET enabled = ?, disabled_reason = ?, updated_at = ? WHERE id = ?
-- name: webhook_delete
DELETE FROM webhook_subscriptions WHERE id = ?
-- name: deliveries_add
INSERT OR IGNORE INTO notification_deliveries
    (delivery_id, task_id, channel, target, event, created_at, subscription_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
-- name: deliveries_forget
DELETE FROM notification_deliveries WHERE task_id IN (SELECT value FROM json_each(?1))
-- name: deliveries_of
SELECT delivery_id, task_id, channel, target, event, created_at, subscription_id
FROM notification_deliveries WHERE task_id = ? ORDER BY created_at, delivery_id
