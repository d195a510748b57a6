-- Concurrency keys are admitted by the leader, not by triggers: a keyed
-- task arrives held (held = 1) and the leader's admission pass lets the
-- best held tasks of each key into the claim index while the key has
-- fewer admitted tasks (queued and not held, or running) than the limit
-- of its newest task. The count is read from the tasks themselves through
-- tasks_key_admitted, so there is no counter to keep in step and nothing
-- for the hot path to write (engine/src/store/keys.rs).
DROP TRIGGER IF EXISTS tasks_key_admit;
DROP TRIGGER IF EXISTS tasks_key_arrive;
DROP TRIGGER IF EXISTS tasks_key_release;
DROP TRIGGER IF EXISTS tasks_key_again;
DROP TABLE IF EXISTS concurrency_keys;

CREATE INDEX tasks_key_admitted ON tasks (concurrency_key)
    WHERE held = 0 AND status IN ('queued', 'running') AND concurrency_key IS NOT NULL;
-- A held task is admitted while its key has fewer admitted tasks than its
-- own limit: nothing reads "the key's newest task" any more, and one index
-- ordered by key fewer is one fewer page each keyed write dirties.
DROP INDEX tasks_by_key;
