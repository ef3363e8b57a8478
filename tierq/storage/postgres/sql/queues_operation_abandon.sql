DELETE FROM bulk_operations WHERE tenant = $1 AND key = $2 AND answer = ''
