-- Tenants. Every task belongs to one tenant (taken from the caller's credential); existing
-- tasks and single-tenant deployments use 'default'. A constant default: no table rewrite.
ALTER TABLE tasks ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- Idempotency keys are unique per tenant: two tenants may use the same key. Lookups by key
-- use the leading column. The insert's ON CONFLICT DO NOTHING names no target, so it skips
-- a row that collides here too.
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_idempotency_key_key;
CREATE UNIQUE INDEX tasks_idempotency_key_tenant ON tasks (idempotency_key, tenant)
    WHERE idempotency_key IS NOT NULL;

-- The tasks of every tenant but 'default', for that tenant's counts and lists. Partial, so a
-- deployment with one tenant pays nothing for it on the hot path; the default tenant's counts
-- are the maintained totals less these (sql/task_counts_default_tenant.sql).
CREATE INDEX tasks_tenant ON tasks (tenant, state, id) WHERE tenant <> 'default';

-- Webhook subscriptions belong to a tenant too, and hear only its events.
ALTER TABLE webhook_subscriptions ADD COLUMN tenant text NOT NULL DEFAULT 'default';
