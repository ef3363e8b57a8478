-- Applied to every connection at open. {synchronous} is one of OFF / NORMAL / FULL / EXTRA,
-- checked against that fixed set before it is substituted (a pragma takes no parameters).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = {synchronous};
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -32768;
PRAGMA foreign_keys = OFF;
