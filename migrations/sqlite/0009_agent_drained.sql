-- An operator's drain is an intent about the agent, not about its
-- connection: it must survive the agent going offline (silent, deregistered)
-- and coming back. `status` alone cannot hold both facts ('offline' would
-- overwrite 'draining'), so the intent has its own column; `status` is
-- 'draining' exactly when the agent is connected and drained.
ALTER TABLE agents ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
UPDATE agents SET drained = 1 WHERE status = 'draining';
