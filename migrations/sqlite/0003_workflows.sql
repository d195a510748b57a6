-- Workflow definitions (versioned), runs, their steps and approvals.

CREATE TABLE workflows (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    definition  TEXT    NOT NULL,             -- the validated definition as JSON
    digest      TEXT    NOT NULL,             -- SHA-256 of it: re-uploading the same text makes no new version
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id      INTEGER NOT NULL REFERENCES workflows (id),
    workflow_name    TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    inputs           TEXT    NOT NULL,
    status           TEXT    NOT NULL,        -- running | waiting_approval | succeeded | failed | cancelled
    error            TEXT,
    started_by       TEXT    NOT NULL,
    idempotency_key  TEXT    UNIQUE,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX runs_by_status ON runs (status, id);

CREATE TABLE run_steps (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    step_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL,             -- pending | running | waiting_approval | succeeded | failed | skipped | cancelled
    output      TEXT,
    error       TEXT,
    item_count  INTEGER,
    generation  INTEGER NOT NULL DEFAULT 0,   -- raised by each retry of the step
    started_at  INTEGER,
    finished_at INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE approvals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    step_id      TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    approvers    TEXT    NOT NULL,            -- JSON {"users": [...], "roles": [...]}
    allow_self   INTEGER NOT NULL,
    on_timeout   TEXT    NOT NULL,            -- approve | reject
    on_reject    TEXT    NOT NULL,            -- fail | continue
    status       TEXT    NOT NULL,            -- pending | approved | rejected | cancelled
    decided_by   TEXT,
    comment      TEXT,
    decided_at   INTEGER,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (run_id, step_id)
);
CREATE INDEX approvals_pending ON approvals (status, expires_at);

ALTER TABLE tasks ADD COLUMN run_id INTEGER;
ALTER TABLE tasks ADD COLUMN step_id TEXT;
ALTER TABLE tasks ADD COLUMN item_index INTEGER;
ALTER TABLE tasks ADD COLUMN step_generation INTEGER;
CREATE INDEX tasks_by_run ON tasks (run_id, step_id) WHERE run_id IS NOT NULL;
