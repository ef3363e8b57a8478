-- Version 3: notifications. Webhook subscriptions (deployment-wide), and the index from a
-- task to the deliveries made about it (each delivery is itself a task, of type
-- tierq.webhook or tierq.email, whose executions are its attempts).
CREATE TABLE webhook_subscriptions (
    id              TEXT    NOT NULL PRIMARY KEY,
    url             TEXT    NOT NULL,
    secret          TEXT    NOT NULL,   -- the signing key: needed to sign, so not hashed
    events          TEXT    NOT NULL,   -- JSON array of event names
    queue           TEXT,
    type            TEXT,
    enabled         INTEGER NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    description     TEXT,
    disabled_reason TEXT
);

CREATE TABLE notification_deliveries (
    delivery_id     TEXT    NOT NULL PRIMARY KEY,
    task_id         TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    subscription_id TEXT
);
CREATE INDEX notification_deliveries_task ON notification_deliveries (task_id, created_at);
