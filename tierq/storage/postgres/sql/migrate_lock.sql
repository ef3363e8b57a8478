-- Serialises migrations of one schema across replicas starting together; released at commit.
SELECT pg_advisory_xact_lock(hashtext('tierq.migrate:' || $1::text))
