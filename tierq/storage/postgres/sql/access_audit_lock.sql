-- Appends to the audit chain one transaction at a time (readers are not blocked).
LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE
