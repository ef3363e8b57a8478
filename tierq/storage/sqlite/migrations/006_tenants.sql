-- Version 6: tenants. Every task belongs to one tenant (taken from the caller's credential);
-- existing tasks and single-tenant deployments use 'default'.
ALTER TABLE tasks ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';

-- Idempotency keys are unique per tenant: two tenants may use the same key. Lookups by key
-- use the leading column.
DROP INDEX IF EXISTS tasks_idempotency_key;
CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key, tenant)
    WHERE idempotency_key IS NOT NULL;

-- The tasks of every tenant but 'default', for that tenant's counts and lists. Partial, so a
-- deployment with one tenant pays nothing for it on the hot path; the default tenant's counts
-- are the maintained totals less these (tierq/storage/sqlite/sql/task_counts_tenant.sql).
CREATE INDEX tasks_tenant ON tasks (tenant, state, id) WHERE tenant <> 'default';

-- Webhook subscriptions belong to a tenant too, and hear only its events.
ALTER TABLE webhook_subscriptions ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
