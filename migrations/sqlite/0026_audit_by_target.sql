-- An agent's page reads its history (registered, drained, enabled,
-- revoked) from the audit entries about it: found by target, newest first.
CREATE INDEX audit_log_by_target ON audit_log (target, id) WHERE target IS NOT NULL;
