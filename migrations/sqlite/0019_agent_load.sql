-- Agent load history: the leader samples every connected agent's running
-- count C and capacity M every few seconds (DROVER_AGENT_LOAD_INTERVAL), in
-- one INSERT … SELECT from `agents`, and deletes samples past the retention
-- (DROVER_AGENT_LOAD_RETENTION) in small batches. Sampling rather than
-- deriving the history from `task_attempts` keeps its cost at one row per
-- agent per interval whatever the throughput, and as rows it survives
-- restarts and every instance reads the same history.
--
-- Keyed by agent and time, so one agent's window is one range read; no
-- foreign key: agents are never deleted, and a sample must not cost a
-- lookup per row. `agent_load_by_time` serves the retention's deletes.

CREATE TABLE agent_load (
    agent_id INTEGER NOT NULL,
    at_us    INTEGER NOT NULL,
    running  INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    PRIMARY KEY (agent_id, at_us)
) WITHOUT ROWID;

CREATE INDEX agent_load_by_time ON agent_load (at_us);
