-- ?1 owner. Running tasks keep their lease: their worker holds them. Terminal tasks hold no
-- lease, so the leased ones are among the live states and tasks_state_id (state, id) reaches
-- them without a table scan (there is no lease_owner index: see 002_counts_in_store.sql).
UPDATE tasks SET lease_owner = NULL
WHERE state IN ('pending', 'scheduled', 'queued')
  AND lease_owner = ?1
