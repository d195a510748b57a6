-- Durable waits of workflow steps: a sleep until a time, a wait for an
-- event by correlation key (with an optional deadline), or a child
-- workflow run. A wait is a row, so it survives restarts and holds no
-- agent slot; the leader wakes due rows, an event resolves matching rows,
-- and a child run's end resolves its row in the same transaction.

CREATE TABLE waits (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    step_id      TEXT    NOT NULL,
    generation   INTEGER NOT NULL,            -- the step's generation: a retried step waits anew
    kind         TEXT    NOT NULL,            -- sleep | event | workflow
    status       TEXT    NOT NULL,            -- waiting | resumed | timed_out | failed | cancelled
    wake_at      INTEGER,                     -- sleep: its time; event: its deadline
    event_key    TEXT,
    on_timeout   TEXT,                        -- event: fail | continue
    child_run_id INTEGER,
    output       TEXT,                        -- JSON: what the step got
    created_at   INTEGER NOT NULL,
    resolved_at  INTEGER,
    UNIQUE (run_id, step_id, generation)
);
CREATE INDEX waits_due ON waits (wake_at) WHERE status = 'waiting' AND wake_at IS NOT NULL;
CREATE INDEX waits_by_key ON waits (event_key) WHERE status = 'waiting' AND event_key IS NOT NULL;
CREATE INDEX waits_by_child ON waits (child_run_id) WHERE child_run_id IS NOT NULL;

-- A child run knows the step that started it.
ALTER TABLE runs ADD COLUMN parent_run_id INTEGER;
ALTER TABLE runs ADD COLUMN parent_step_id TEXT;
