-- Whether planner statistics exist (see statistics_forget.sql).
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'
