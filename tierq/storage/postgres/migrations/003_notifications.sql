-- Notifications: webhook subscriptions (deployment-wide), and the index from a task to the
-- deliveries made about it (each delivery is itself a task, of type tierq.webhook or
-- tierq.email, whose executions are its attempts).
CREATE TABLE webhook_subscriptions (
    id              uuid PRIMARY KEY,
    url             text NOT NULL,
    secret          text NOT NULL,   -- the signing key: needed to sign, so not hashed
    events          text[] NOT NULL,
    queue           text,
    type            text,
    enabled         boolean NOT NULL,
    created_at      double precision NOT NULL,
    updated_at      double precision NOT NULL,
    description     text,
    disabled_reason text
);

CREATE TABLE notification_deliveries (
    delivery_id     uuid PRIMARY KEY,
    task_id         uuid NOT NULL,
    channel         text NOT NULL,
    target          text NOT NULL,
    event           text NOT NULL,
    created_at      double precision NOT NULL,
    subscription_id uuid
);
CREATE INDEX notification_deliveries_task ON notification_deliveries (task_id, created_at);
