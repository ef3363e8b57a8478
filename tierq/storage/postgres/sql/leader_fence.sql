SELECT nextval('schedule_leader_fence')
