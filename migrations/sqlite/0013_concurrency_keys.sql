-- Concurrency keys (named semaphores). A task with a concurrency_key may
-- run only while its key has fewer than concurrency_limit tasks admitted
-- (queued and not held, or running). A task that finds its key full is
-- *held*: still queued, but out of the claim index, so it blocks nothing
-- behind it. When an admitted task ends, the best held task of its key
-- (rank, then id) takes the slot. Triggers keep the count; they are
-- created with the first keyed task (engine/src/store/sqlite/keys.rs), not
-- here: a trigger on `tasks`, even one that never fires, costs SQLite's
-- claims and results about a third, and a database without keys should
-- not pay it.

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
