-- The overview's history over ranges up to seven days (docs/ARCHITECTURE.md,
-- "The overview over time"). Reading it from the tasks would grow with
-- the history (a week of finished tasks is millions of rows), so the leader
-- writes small rows as time passes and the overview reads those:
--
-- finish_counts: tasks finished per five-second slot (slot_us, a multiple
-- of 5,000,000 µs: finished_at in slot_us .. slot_us + 5 s), succeeded and
-- failed apart. The leader counts each slot once, through tasks_finished,
-- once it is MARK_LAG behind the clock; finish_counts_mark.upto is where
-- it has counted to (slots before it are done, empty ones have no row).
-- Readers add the few finishes after the mark from tasks_finished.
--
-- queue_depth: the queued tasks per task type as the leader counted them
-- every DROVER_QUEUE_DEPTH_INTERVAL: the busiest types of each sample, and
-- a row with the empty task type (no task type is empty) holding the
-- sample's total, so a sample of an empty queue is a row too.
--
-- Both are keyed by time first: a range of the key is a window, and the
-- leader deletes rows older than the longest range in small batches.

CREATE TABLE finish_counts (
    slot_us   BIGINT NOT NULL PRIMARY KEY,
    succeeded BIGINT NOT NULL,
    failed    BIGINT NOT NULL
);
CREATE TABLE finish_counts_mark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);
INSERT INTO finish_counts_mark (id, upto) VALUES (1, 0);

CREATE TABLE queue_depth (
    at_us     BIGINT NOT NULL,
    task_type TEXT NOT NULL,
    queued    BIGINT NOT NULL,
    PRIMARY KEY (at_us, task_type)
);
