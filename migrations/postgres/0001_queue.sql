-- Drover's queue, agent registry and leadership on PostgreSQL.
-- Timestamps are microseconds since the Unix epoch (BIGINT), the same as on
-- SQLite, so both stores share one domain model. JSON values are TEXT: the
-- server never queries inside them, and TEXT avoids a parse per row.

CREATE TABLE agents (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT     NOT NULL,
    hostname          TEXT     NOT NULL,
    version           TEXT     NOT NULL,
    task_types        TEXT[]   NOT NULL,
    labels            TEXT[]   NOT NULL,
    capacity          BIGINT   NOT NULL CHECK (capacity >= 1),
    running           BIGINT   NOT NULL DEFAULT 0 CHECK (running >= 0),
    status            TEXT     NOT NULL,
    token_hash        TEXT     NOT NULL UNIQUE,
    registered_at     BIGINT   NOT NULL,
    last_heartbeat_at BIGINT   NOT NULL
);
CREATE INDEX agents_live ON agents (status, last_heartbeat_at);

CREATE TABLE tasks (
    id               BIGSERIAL PRIMARY KEY,
    task_type        TEXT     NOT NULL,
    payload          TEXT     NOT NULL,
    urgency          BIGINT   NOT NULL,
    time_sensitivity BIGINT   NOT NULL,
    importance       BIGINT   NOT NULL,
    priority         DOUBLE PRECISION NOT NULL,
    rank             DOUBLE PRECISION NOT NULL,
    status           TEXT     NOT NULL,
    attempts         BIGINT   NOT NULL DEFAULT 0,
    claims           BIGINT   NOT NULL DEFAULT 0,
    max_attempts     BIGINT   NOT NULL,
    timeout_ms       BIGINT   NOT NULL,
    retry_backoff_ms BIGINT   NOT NULL,
    required_labels  TEXT[]   NOT NULL DEFAULT '{}',
    idempotency_key  TEXT     UNIQUE,
    result           TEXT,
    error            TEXT,
    agent_id         BIGINT,
    lease_token      BIGINT,
    lease_expires_at BIGINT,
    claim_load       DOUBLE PRECISION,
    run_after        BIGINT   NOT NULL,
    created_at       BIGINT   NOT NULL,
    updated_at       BIGINT   NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX tasks_claim   ON tasks (rank DESC, id) WHERE status = 'queued';
CREATE INDEX tasks_leases  ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_holder  ON tasks (agent_id) WHERE status = 'running';
CREATE INDEX tasks_by_status ON tasks (status, id);
CREATE INDEX tasks_delayed ON tasks (run_after) WHERE status = 'queued';

CREATE TABLE task_attempts (
    task_id       BIGINT   NOT NULL REFERENCES tasks (id),
    lease_token   BIGINT   NOT NULL,
    attempt       BIGINT   NOT NULL,
    agent_id      BIGINT   NOT NULL,
    agent_load    DOUBLE PRECISION NOT NULL,
    claimed_at    BIGINT   NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    outcome       TEXT     NOT NULL,
    error         TEXT,
    PRIMARY KEY (task_id, lease_token)
);

CREATE TABLE task_events (
    id       BIGSERIAL PRIMARY KEY,
    task_id  BIGINT   NOT NULL REFERENCES tasks (id),
    at       BIGINT   NOT NULL,
    kind     TEXT     NOT NULL,
    status   TEXT     NOT NULL,
    agent_id BIGINT,
    detail   TEXT
);
CREATE INDEX task_events_by_task ON task_events (task_id, id);

CREATE TABLE leadership (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
