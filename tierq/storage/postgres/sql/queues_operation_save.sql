-- Returns the stored answer: this call's, or the one a concurrent call stored first.
WITH inserted AS (
    INSERT INTO bulk_operations (tenant, key, answer, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant, key) DO NOTHING
    RETURNING answer
)
SELECT answer FROM inserted
UNION ALL
SELECT answer FROM bulk_operations WHERE tenant = $1 AND key = $2
LIMIT 1
