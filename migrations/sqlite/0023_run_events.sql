-- A run's history (docs/ARCHITECTURE.md, "Run events"): one row per thing
-- that happened to it — started, a step started, succeeded, failed or was
-- skipped, a compensation ran, someone retried a step, cancelled the run
-- or decided an approval, the run finished — appended in the transaction
-- of the change it records and never updated, so a retried step keeps its
-- first failure. Ordered by (at, id); retention deletes them with the run.

CREATE TABLE run_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,             -- RunEventKind (protocol/src/workflow.rs)
    step_id    TEXT,
    generation INTEGER,                      -- the step's generation
    actor      TEXT,                         -- who: a user, schedule:3, timeout
    status     TEXT,                         -- what it led to
    detail     TEXT                          -- an error, a comment, a reason (cut to 2 KiB)
);
CREATE INDEX run_events_by_run ON run_events (run_id, at, id);

-- Runs from before this table: their history as their rows still tell it
-- (a retried step's earlier generations are gone from them).
INSERT INTO run_events (run_id, at, kind, step_id, generation, actor, status, detail)
SELECT run_id, at, kind, step_id, generation, actor, status, detail FROM (
    SELECT id AS run_id, created_at AS at, 0 AS rank, 'run_started' AS kind, NULL AS step_id,
           NULL AS generation, started_by AS actor, NULL AS status, NULL AS detail
      FROM runs
    UNION ALL
    SELECT s.run_id, s.started_at, 1, 'step_started', s.step_id, s.generation, NULL,
           CASE WHEN EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = s.run_id AND a.step_id = s.step_id)
                THEN 'waiting_approval' ELSE 'running' END, NULL
      FROM run_steps s WHERE s.started_at IS NOT NULL AND s.status NOT IN ('pending', 'skipped')
    UNION ALL
    SELECT s.run_id, s.finished_at, 2, 'step_' || s.status, s.step_id, s.generation, NULL, s.status,
           substr(s.error, 1, 2000)
      FROM run_steps s WHERE s.finished_at IS NOT NULL AND s.status IN ('succeeded', 'failed', 'skipped')
       AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = s.run_id AND a.step_id = s.step_id
                       AND a.status IN ('approved', 'rejected'))
    UNION ALL
    SELECT a.run_id, a.decided_at, 2, 'approval_decided', a.step_id,
           (SELECT s.generation FROM run_steps s WHERE s.run_id = a.run_id AND s.step_id = a.step_id),
           a.decided_by, a.status,
           substr(a.comment, 1, 2000)
      FROM approvals a WHERE a.decided_at IS NOT NULL AND a.status IN ('approved', 'rejected')
    UNION ALL
    SELECT id, finished_at, 3, CASE WHEN status = 'cancelled' THEN 'run_cancelled' ELSE 'run_finished' END,
           NULL, NULL, NULL, CASE WHEN status = 'cancelled' THEN NULL ELSE status END, substr(error, 1, 2000)
      FROM runs WHERE finished_at IS NOT NULL AND status IN ('succeeded', 'failed', 'cancelled')
) ORDER BY run_id, at, rank, step_id;
