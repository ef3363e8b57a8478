SELECT value FROM events_meta WHERE key = 'seq'
