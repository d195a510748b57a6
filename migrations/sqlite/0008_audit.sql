-- The audit log: who did what, append-only. Triggers refuse every UPDATE
-- and DELETE, so not even the server's own connection can rewrite history.

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,              -- µs since the epoch
    actor   TEXT    NOT NULL,              -- user name, agent:<id>, or system
    action  TEXT    NOT NULL,              -- e.g. sign_in.failed, agent.revoked
    target  TEXT,                          -- what it was done to: task:7, run:3, user:olga
    detail  TEXT                           -- JSON object with the particulars
);
CREATE INDEX audit_log_by_action ON audit_log (action, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
