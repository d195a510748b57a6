-- A trigger may deliver an event (resuming the workflow steps waiting on
-- its key) instead of starting a workflow: event_key is a JSON pointer into
-- the delivery's body, event_prefix what goes before its value. Such a
-- trigger's workflow is ''.
ALTER TABLE triggers ADD COLUMN event_key TEXT;
ALTER TABLE triggers ADD COLUMN event_prefix TEXT;
