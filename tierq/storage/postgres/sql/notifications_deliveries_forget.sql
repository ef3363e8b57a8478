-- The delivery index of tasks that are gone (retention).
DELETE FROM notification_deliveries WHERE task_id = ANY($1::uuid[])
