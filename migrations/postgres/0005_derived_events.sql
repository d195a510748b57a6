-- A task's `submitted` and `claimed` events are read from the task row and
-- its attempts (created_at, claimed_at) and no longer stored.
DELETE FROM task_events WHERE kind IN ('submitted', 'claimed');
