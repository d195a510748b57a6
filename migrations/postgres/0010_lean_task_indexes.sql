-- Fewer index entries per task. An UPDATE that changes an indexed column
-- writes a new row version and an entry in every index of the table whose
-- predicate it meets, and a task is written three times (submit, claim,
-- result): each index on all rows costs three entries per task.
--
-- Idempotency keys: only tasks that have one are indexed (a plain task's
-- NULL key was indexed, three times). Inserts name the predicate in
-- ON CONFLICT.
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_idempotency_key_key;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Status: queued tasks are found by tasks_claim, running ones by
-- tasks_leases and tasks_holder, succeeded ones newest first by the primary
-- key (nearly every finished task succeeded); only the rarer failed and
-- cancelled tasks need an index of their own.
DROP INDEX IF EXISTS tasks_by_status;
CREATE INDEX tasks_unsuccessful ON tasks (status, id) WHERE status IN ('failed', 'cancelled');

-- Delayed tasks: only those whose run_after lies after their submission
-- (run_after given, or a retry's backoff) can be waited for; the others
-- were due from the start.
DROP INDEX IF EXISTS tasks_delayed;
CREATE INDEX tasks_delayed ON tasks (run_after) WHERE status = 'queued' AND run_after > created_at;
