-- Transaction control used by the connection threads (tierq/storage/sqlite/connection.py).
-- IMMEDIATE takes the write lock at BEGIN, so a group never fails half way on SQLITE_BUSY.
-- name: begin
BEGIN IMMEDIATE
-- name: commit
COMMIT
-- name: rollback
ROLLBACK
