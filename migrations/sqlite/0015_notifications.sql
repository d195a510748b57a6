-- Outgoing notifications: a rule posts a JSON webhook when a run fails, a
-- run waits for an approval, a task fails for good or an agent goes
-- offline. The leader reads those events from the rows that record them
-- (since a cursor per kind of event) and writes one delivery per rule and
-- event; the unique (rule_id, event_key) makes writing it again change
-- nothing, so a pass repeated after a crash or by a new leader sends
-- nothing twice. Deliveries are posted and retried from this table.

CREATE TABLE notification_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    events      TEXT    NOT NULL,        -- JSON array: run_failed | approval_waiting | task_failed | agent_offline
    workflow    TEXT,                    -- only events of this workflow's runs
    task_type   TEXT,                    -- only tasks of this type / agents handling it
    url         TEXT    NOT NULL,        -- http(s); may hold a credential (Slack's do)
    secret      TEXT,                    -- HMAC key of X-Drover-Signature; NULL: unsigned
    prefix      TEXT,                    -- the secret's first characters
    enabled     BOOLEAN NOT NULL,
    enabled_at  INTEGER NOT NULL,        -- events from this time on match (creation, or last enable)
    created_by  TEXT    NOT NULL,
    updated_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- No foreign key to the rule: a delivery's history outlives its rule
-- (deleting a rule fails its pending deliveries).
CREATE TABLE notification_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id          INTEGER NOT NULL,
    rule_name        TEXT    NOT NULL,
    event            TEXT    NOT NULL,   -- an event kind, or test
    event_key        TEXT    NOT NULL,   -- <kind>:<subject id>:<time>: one delivery per rule and event
    event_at         INTEGER NOT NULL,
    summary          TEXT    NOT NULL,   -- the payload's one-line text
    payload          TEXT    NOT NULL,   -- the JSON body, the same bytes at every attempt
    status           TEXT    NOT NULL,   -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,            -- pending: due then (or the attempt under way's lease)
    last_attempt_at  INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (rule_id, event_key)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_deliveries_by_rule ON notification_deliveries (rule_id, id);

-- How far the leader has read each kind of event: (time, id) of the last
-- row read, in the order the scan reads them.
CREATE TABLE notification_cursors (
    kind TEXT    PRIMARY KEY,
    at   INTEGER NOT NULL,
    id   INTEGER NOT NULL
);

-- Where each event is recorded, indexed for the scan. Partial indexes: a
-- task or run enters them only when it fails, so the claim and result
-- paths write nothing more for the tasks that succeed.
ALTER TABLE agents ADD COLUMN offline_at INTEGER;  -- when the sweep found it silent
CREATE INDEX agents_offline_at ON agents (offline_at) WHERE status = 'offline';
CREATE INDEX tasks_failed_at ON tasks (finished_at) WHERE status = 'failed';
CREATE INDEX runs_failed_at ON runs (finished_at) WHERE status = 'failed';
CREATE INDEX approvals_created_at ON approvals (created_at);
