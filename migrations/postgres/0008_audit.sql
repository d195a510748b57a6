-- The audit log: who did what, append-only. Triggers refuse every UPDATE,
-- DELETE and TRUNCATE, whichever role asks, so the server's role cannot
-- rewrite history; PUBLIC gets no such rights either.

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT  NOT NULL,              -- µs since the epoch
    actor   TEXT    NOT NULL,              -- user name, agent:<id>, or system
    action  TEXT    NOT NULL,              -- e.g. sign_in.failed, agent.revoked
    target  TEXT,                          -- what it was done to: task:7, run:3, user:olga
    detail  TEXT                           -- JSON object with the particulars
);
CREATE INDEX audit_log_by_action ON audit_log (action, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
