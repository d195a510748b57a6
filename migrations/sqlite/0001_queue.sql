-- Drover's queue, agent registry and leadership on SQLite.
-- Timestamps are microseconds since the Unix epoch; JSON values are TEXT.

CREATE TABLE agents (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT    NOT NULL,
    hostname          TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    task_types        TEXT    NOT NULL,            -- JSON array of strings
    labels            TEXT    NOT NULL,            -- JSON array of strings
    capacity          INTEGER NOT NULL CHECK (capacity >= 1),
    running           INTEGER NOT NULL DEFAULT 0 CHECK (running >= 0),
    status            TEXT    NOT NULL,            -- online | draining | offline | deregistered
    token_hash        TEXT    NOT NULL UNIQUE,
    registered_at     INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
);
CREATE INDEX agents_live ON agents (status, last_heartbeat_at);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_type        TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    urgency          INTEGER NOT NULL,
    time_sensitivity INTEGER NOT NULL,
    importance       INTEGER NOT NULL,
    priority         REAL    NOT NULL,             -- P = a*urgency + b*time_sensitivity + c*importance
    rank             REAL    NOT NULL,             -- claim order: P aged by waiting time (docs/ARCHITECTURE.md)
    status           TEXT    NOT NULL,             -- queued | running | succeeded | failed | cancelled
    attempts         INTEGER NOT NULL DEFAULT 0,   -- counted against max_attempts
    claims           INTEGER NOT NULL DEFAULT 0,   -- every claim; the current one is the lease token
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    retry_backoff_ms INTEGER NOT NULL,
    required_labels  TEXT    NOT NULL DEFAULT '[]',
    idempotency_key  TEXT    UNIQUE,
    result           TEXT,
    error            TEXT,
    agent_id         INTEGER,
    lease_token      INTEGER,
    lease_expires_at INTEGER,
    claim_load       REAL,
    run_after        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX tasks_claim   ON tasks (rank DESC, id) WHERE status = 'queued';
CREATE INDEX tasks_leases  ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_holder  ON tasks (agent_id) WHERE status = 'running';
CREATE INDEX tasks_by_status ON tasks (status, id);
CREATE INDEX tasks_delayed ON tasks (run_after) WHERE status = 'queued';

CREATE TABLE task_attempts (
    task_id       INTEGER NOT NULL REFERENCES tasks (id),
    lease_token   INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    agent_id      INTEGER NOT NULL,
    agent_load    REAL    NOT NULL,
    claimed_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    outcome       TEXT    NOT NULL,
    error         TEXT,
    PRIMARY KEY (task_id, lease_token)
);

CREATE TABLE task_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id  INTEGER NOT NULL REFERENCES tasks (id),
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    agent_id INTEGER,
    detail   TEXT
);
CREATE INDEX task_events_by_task ON task_events (task_id, id);

CREATE TABLE leadership (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
