SELECT answer FROM bulk_operations WHERE tenant = $1 AND key = $2
