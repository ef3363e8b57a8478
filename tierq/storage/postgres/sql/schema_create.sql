-- Returns the DDL that creates the store's schema; the identifier is quoted by the server.
SELECT format('CREATE SCHEMA IF NOT EXISTS %I', $1::text)
