-- One statement for a whole batch of deliveries.
INSERT INTO notification_deliveries
    (delivery_id, task_id, channel, target, event, created_at, subscription_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                     $6::double precision[], $7::uuid[])
ON CONFLICT (delivery_id) DO NOTHING
