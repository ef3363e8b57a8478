INSERT INTO task_dependencies (task_id, depends_on_id) VALUES (?, ?)
ON CONFLICT DO NOTHING
