-- Run by the writer before it closes: refreshes planner statistics where they went stale.
PRAGMA optimize
