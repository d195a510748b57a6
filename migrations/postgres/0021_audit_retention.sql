-- Retention for the audit log: entries at least 30 days old may be deleted
-- (by the leader's retention loop, under DROVER_AUDIT_RETENTION); younger
-- ones stay append-only, so whoever holds the server's database access
-- still cannot erase what was done in the last 30 days. Updates and
-- TRUNCATE stay refused.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.at < (EXTRACT(EPOCH FROM clock_timestamp())::BIGINT - 30 * 86400) * 1000000 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only for 30 days';
END;
$$;
