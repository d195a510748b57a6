-- Rate limits: token buckets kept in the database, so a limit holds across
-- server instances. A task of a limited type (scope 'type:<task type>') or
-- concurrency key ('key:<key>') arrives *rate-held* (held = 2: queued, out
-- of the claim index); the leader releases held tasks, best rank first, as
-- the bucket's tokens allow, through the concurrency key's admission when
-- the task has a key. The trigger that holds arriving tasks is created with
-- the first limit (engine/src/store/rate_limits.rs), as the keys' are.

CREATE TABLE rate_limits (
    scope       TEXT    PRIMARY KEY,
    per_second  REAL    NOT NULL,
    burst       INTEGER NOT NULL,
    tokens      REAL    NOT NULL,
    refilled_at INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX tasks_rate_by_type ON tasks (task_type, rank DESC, id) WHERE status = 'queued' AND held = 2;
CREATE INDEX tasks_rate_by_key ON tasks (concurrency_key, rank DESC, id) WHERE status = 'queued' AND held = 2;

-- Recreated (with the first keyed task) so that a rate-held task is not
-- admitted to its key on arrival: the release admits it.
DROP TRIGGER IF EXISTS tasks_key_arrive;
