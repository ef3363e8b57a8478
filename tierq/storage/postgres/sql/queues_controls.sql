SELECT queue, paused, max_running, rate_limit, rate_per_s, updated_at FROM queue_controls
