-- Run at open, before the store's connections read the schema: planner statistics are never
-- kept. With sqlite_stat1 present (written by ANALYZE or PRAGMA optimize, which earlier
-- versions ran at close), SQLite 3.40 plans the transition UPDATE ... FROM (VALUES ...) with
-- a Bloom filter on tasks, built by scanning the whole table for every batch: 38 ms instead
-- of 0.4 ms per 256 rows with 250,000 tasks stored, a five-fold fall of end-to-end
-- throughput after every restart (BENCHMARKS.md, "Schedules"). The statements that need a
-- particular index name it (INDEXED BY), so no query relies on statistics.
DELETE FROM sqlite_stat1
