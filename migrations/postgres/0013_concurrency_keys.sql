-- Concurrency keys (named semaphores). A task with a concurrency_key may
-- run only while its key has fewer than concurrency_limit tasks admitted
-- (queued and not held, or running). A task that finds its key full is
-- *held*: still queued, but out of the claim index, so it blocks nothing
-- behind it. When an admitted task ends, the best held task of its key
-- (rank, then id) takes the slot. The triggers keep the count; the key's
-- row is locked by every change of its count, so two instances cannot both
-- take its last slot.

ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE tasks ADD COLUMN concurrency_limit BIGINT;
ALTER TABLE tasks ADD COLUMN held BIGINT NOT NULL DEFAULT 0;

CREATE TABLE concurrency_keys (
    key          TEXT   PRIMARY KEY,
    admitted     BIGINT NOT NULL DEFAULT 0,  -- tasks of the key queued (not held) or running
    max_admitted BIGINT NOT NULL             -- the limit the newest task of the key gave
);

DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (rank DESC, id) WHERE status = 'queued' AND held = 0;
CREATE INDEX tasks_held ON tasks (concurrency_key, rank DESC, id) WHERE status = 'queued' AND held = 1;
CREATE INDEX tasks_by_key ON tasks (concurrency_key, id)
    WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running');

-- A keyed task arrives (or is queued again after it ended): admitted if
-- its key has room, else held.
CREATE FUNCTION drover_key_admit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One statement: a new key is made with this task admitted; a known
    -- one counts it if it has room under the task's limit (the newest
    -- limit is the key's), and is left alone when full.
    INSERT INTO concurrency_keys AS k (key, admitted, max_admitted)
        VALUES (NEW.concurrency_key, 1, NEW.concurrency_limit)
        ON CONFLICT (key) DO UPDATE SET admitted = k.admitted + 1, max_admitted = EXCLUDED.max_admitted
        WHERE k.admitted < EXCLUDED.max_admitted;
    NEW.held := CASE WHEN FOUND THEN 0 ELSE 1 END;
    RETURN NEW;
END $$;

CREATE TRIGGER tasks_key_arrive BEFORE INSERT ON tasks FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued')
    EXECUTE FUNCTION drover_key_admit();

CREATE TRIGGER tasks_key_again BEFORE UPDATE OF status ON tasks FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued'
          AND OLD.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION drover_key_admit();

-- An admitted task ends: its slot goes to the best held task of its key.
CREATE FUNCTION drover_key_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id BIGINT;
BEGIN
    UPDATE concurrency_keys SET admitted = admitted - 1 WHERE key = NEW.concurrency_key;
    SELECT id INTO next_id FROM tasks
        WHERE status = 'queued' AND held = 1 AND concurrency_key = NEW.concurrency_key
        ORDER BY rank DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF next_id IS NOT NULL THEN
        UPDATE concurrency_keys SET admitted = admitted + 1
            WHERE key = NEW.concurrency_key AND admitted < max_admitted;
        IF FOUND THEN
            UPDATE tasks SET held = 0 WHERE id = next_id;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_key_release AFTER UPDATE OF status ON tasks FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL AND OLD.held = 0
          AND OLD.status IN ('queued', 'running') AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION drover_key_release();
