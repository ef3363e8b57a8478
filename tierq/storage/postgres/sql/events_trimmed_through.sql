SELECT value FROM events_meta WHERE key = 'trimmed_through'
