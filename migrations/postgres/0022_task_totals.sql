-- Counts and windows that do not read the whole history (docs/SCALING.md).
--
-- Finished tasks are counted once, up to a mark the leader moves forward
-- (task_totals_mark.upto, a finished_at): the totals hold the finished
-- tasks at or before the mark, and a count of those after it (a range of
-- tasks_finished) completes them. A retry or a retention delete of a task
-- already counted takes it out of the totals.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE task_totals (
    status TEXT    PRIMARY KEY,
    n      BIGINT NOT NULL
);
INSERT INTO task_totals (status, n) VALUES ('succeeded', 0), ('failed', 0), ('cancelled', 0);
CREATE TABLE task_totals_mark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);
INSERT INTO task_totals_mark (id, upto) VALUES (1, 0);

-- The queue-health window (first claims, and leases lost) as ranges.
CREATE INDEX task_attempts_claimed ON task_attempts (claimed_at);
CREATE INDEX task_attempts_lost ON task_attempts (finished_at) WHERE outcome = 'lost';
