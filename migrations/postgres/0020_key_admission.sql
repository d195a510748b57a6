-- Concurrency keys are admitted by the leader, not by triggers: a keyed
-- task arrives held (held = 1) and the leader's admission pass lets the
-- best held tasks of each key into the claim index while the key has
-- fewer admitted tasks (queued and not held, or running) than the limit
-- of its newest task. The count is read from the tasks themselves through
-- tasks_key_admitted, so there is no counter to keep in step, and no hot
-- key row that every submit and results batch must lock until it commits
-- (engine/src/store/keys.rs).
DROP TRIGGER IF EXISTS tasks_key_arrive ON tasks;
DROP TRIGGER IF EXISTS tasks_key_again ON tasks;
DROP TRIGGER IF EXISTS tasks_key_release ON tasks;
DROP FUNCTION IF EXISTS drover_key_admit();
DROP FUNCTION IF EXISTS drover_key_release();
DROP TABLE IF EXISTS concurrency_keys;

CREATE INDEX tasks_key_admitted ON tasks (concurrency_key)
    WHERE held = 0 AND status IN ('queued', 'running') AND concurrency_key IS NOT NULL;
-- A held task is admitted while its key has fewer admitted tasks than its
-- own limit: nothing reads "the key's newest task" any more, and one index
-- ordered by key fewer is one fewer page each keyed write dirties.
DROP INDEX tasks_by_key;

-- A rate limit now holds keyed tasks through the same trigger as the
-- others (the keys' trigger used to): its function checks both scopes.
CREATE OR REPLACE FUNCTION drover_rate_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM rate_limits
            WHERE scope = 'type:' || NEW.task_type OR scope = 'key:' || NEW.concurrency_key) THEN
        NEW.held := 2;
    END IF;
    RETURN NEW;
END $$;

-- The trigger is made with the first limit; where it exists, it is made
-- again without its old "no key" condition.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'tasks_rate_arrive') THEN
        DROP TRIGGER tasks_rate_arrive ON tasks;
        CREATE TRIGGER tasks_rate_arrive BEFORE INSERT ON tasks
            FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION drover_rate_hold();
    END IF;
END $$;
