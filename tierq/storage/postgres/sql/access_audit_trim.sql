-- Retention: rows older than $1 go (the oldest kept row anchors the chain).
DELETE FROM audit_log WHERE at < $1
