UPDATE bulk_operations SET answer = $3 WHERE tenant = $1 AND key = $2
