-- Schedules: a workflow run or a task started by cron or once at a time.
-- The leader fires a schedule whose next_fire_at has passed; each tick
-- starts its run or task with the idempotency key schedule:<id>:<tick in
-- unix seconds>, so a tick fired twice (a leader change, two instances)
-- starts one. next_fire_at is NULL when paused or done, so the due index
-- holds only what may fire.

CREATE TABLE schedules (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    description      TEXT,
    workflow         TEXT,                    -- a workflow target, or
    workflow_version INTEGER,                    -- NULL: the latest at each tick
    inputs           TEXT    NOT NULL,        -- JSON object
    task             TEXT,                    -- a task target: the NewTask as JSON
    cron             TEXT,                    -- a cron schedule, or
    time_zone        TEXT    NOT NULL,
    at               INTEGER,                    -- once, at this time (µs)
    missed_policy    TEXT    NOT NULL,        -- skip | run_once
    overlap_policy   TEXT    NOT NULL,        -- allow | skip | cancel_previous
    state            TEXT    NOT NULL,        -- active | paused | done
    next_fire_at     INTEGER,
    last_tick_at     INTEGER,
    last_outcome     TEXT,                    -- started | skipped | missed | failed
    last_run_id      INTEGER,
    last_task_id     INTEGER,
    last_detail      TEXT,
    fired_count      INTEGER    NOT NULL DEFAULT 0,
    missed_count     INTEGER    NOT NULL DEFAULT 0,
    revision         INTEGER    NOT NULL DEFAULT 1,
    created_by       TEXT    NOT NULL,
    updated_by       TEXT    NOT NULL,
    created_at       INTEGER    NOT NULL,
    updated_at       INTEGER    NOT NULL,
    CHECK ((workflow IS NULL) <> (task IS NULL)),
    CHECK ((cron IS NULL) <> (at IS NULL))
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
