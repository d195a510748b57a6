-- Retention for the audit log: entries at least 30 days old may be deleted
-- (by the leader's retention loop, under DROVER_AUDIT_RETENTION); younger
-- ones stay append-only, so whoever holds the server's database access
-- still cannot erase what was done in the last 30 days. Updates stay
-- refused.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.at >= (CAST(strftime('%s', 'now') AS INTEGER) - 30 * 86400) * 1000000
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only for 30 days');
END;
