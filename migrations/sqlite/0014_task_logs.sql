-- Live logs: what a task's handlers printed, shipped by the agent holding
-- the task while it runs, kept after it ends.
--
-- `seq` numbers a task's lines 1, 2, … across its attempts (given out by
-- `task_log_heads.next_seq`, so appends never read the lines); seq 0 is the
-- one note saying how many of the oldest lines were dropped at the server's
-- bound (DROVER_MAX_LOG_LINES), rewritten as more go. `stream` is stdout,
-- stderr or note (Drover's own words: lines dropped here or by the agent).
-- `at` is when the agent read the line, by its clock (the server's for notes).
-- Only the head row references `tasks`: it is written in every append's
-- transaction, so one check per batch stands for a check per line.

CREATE TABLE task_logs (
    task_id INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    line    TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

-- One row per task with a log: the next seq to give out, the oldest line
-- kept, and how many lines the bound dropped.
CREATE TABLE task_log_heads (
    task_id   INTEGER PRIMARY KEY REFERENCES tasks (id),
    next_seq  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    dropped   INTEGER NOT NULL DEFAULT 0
);
