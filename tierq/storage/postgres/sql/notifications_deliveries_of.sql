SELECT delivery_id::text, task_id::text, channel, target, event, created_at,
       subscription_id::text
FROM notification_deliveries WHERE task_id = $1::uuid ORDER BY created_at, delivery_id
