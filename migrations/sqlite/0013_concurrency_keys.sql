-- Concurrency keys (named semaphores). A task with a concurrency_key may
-- run only while its key has fewer than concurrency_limit tasks admitted
-- (queued and not held, or running). A task that finds its key full is
-- *held*: still queued, but out of the claim index, so it blocks nothing
-- behind it. When an admitted task ends, the best held task of its key
-- (rank, then id) takes the slot. The triggers below keep the count: a
-- task admitted on arrival is counted there (its row is not written again),
-- a held one when tasks_key_admit sees its held flag go from 1 to 0.

ALTER TABLE tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE tasks ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE tasks ADD COLUMN held INTEGER NOT NULL DEFAULT 0;

CREATE TABLE concurrency_keys (
    key          TEXT    PRIMARY KEY,
    admitted     INTEGER NOT NULL DEFAULT 0,  -- tasks of the key queued (not held) or running
    max_admitted INTEGER NOT NULL             -- the limit the newest task of the key gave
);

DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (rank DESC, id) WHERE status = 'queued' AND held = 0;
CREATE INDEX tasks_held ON tasks (concurrency_key, rank DESC, id) WHERE status = 'queued' AND held = 1;
CREATE INDEX tasks_by_key ON tasks (concurrency_key, id)
    WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running');

CREATE TRIGGER tasks_key_admit AFTER UPDATE OF held ON tasks
WHEN OLD.held = 1 AND NEW.held = 0 AND NEW.concurrency_key IS NOT NULL
BEGIN
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key;
END;

-- A keyed task arrives: held, then admitted at once if its key has room.
CREATE TRIGGER tasks_key_arrive AFTER INSERT ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued'
BEGIN
    INSERT INTO concurrency_keys (key, admitted, max_admitted)
        VALUES (NEW.concurrency_key, 0, NEW.concurrency_limit)
        ON CONFLICT (key) DO UPDATE SET max_admitted = excluded.max_admitted
        WHERE max_admitted <> excluded.max_admitted;
    UPDATE tasks SET held = 1 WHERE id = NEW.id
        AND (SELECT admitted >= max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key
        AND (SELECT held FROM tasks WHERE id = NEW.id) = 0;
END;

-- An admitted task ends: its slot goes to the best held task of its key.
CREATE TRIGGER tasks_key_release AFTER UPDATE OF status ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND OLD.held = 0
    AND OLD.status IN ('queued', 'running') AND NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE concurrency_keys SET admitted = admitted - 1 WHERE key = NEW.concurrency_key;
    UPDATE tasks SET held = 0 WHERE id = (
            SELECT id FROM tasks WHERE status = 'queued' AND held = 1
                AND concurrency_key = NEW.concurrency_key ORDER BY rank DESC, id LIMIT 1)
        AND (SELECT admitted < max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
END;

-- A keyed task queued again after it ended (a retry): admitted or held
-- as if it arrived.
CREATE TRIGGER tasks_key_again AFTER UPDATE OF status ON tasks
WHEN NEW.concurrency_key IS NOT NULL AND NEW.status = 'queued'
    AND OLD.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    UPDATE tasks SET held = 1 WHERE id = NEW.id AND held = 0
        AND (SELECT admitted >= max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE tasks SET held = 0 WHERE id = NEW.id AND held = 1
        AND (SELECT admitted < max_admitted FROM concurrency_keys WHERE key = NEW.concurrency_key);
    UPDATE concurrency_keys SET admitted = admitted + 1 WHERE key = NEW.concurrency_key
        AND OLD.held = 0 AND (SELECT held FROM tasks WHERE id = NEW.id) = 0;
END;
