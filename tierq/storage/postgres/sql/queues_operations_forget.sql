DELETE FROM bulk_operations WHERE created_at < $1
