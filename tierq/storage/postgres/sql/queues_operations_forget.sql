DELETE FROM bulk_operations
WHERE created_at < $1 OR (answer = '' AND created_at < $2)
