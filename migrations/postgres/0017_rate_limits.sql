-- Rate limits: token buckets kept in the database, so a limit holds across
-- server instances. A task of a limited type (scope 'type:<task type>') or
-- concurrency key ('key:<key>') arrives *rate-held* (held = 2: queued, out
-- of the claim index); the leader releases held tasks, best rank first, as
-- the bucket's tokens allow, through the concurrency key's admission when
-- the task has a key. Keyed tasks are held by the keys' trigger; the
-- trigger for tasks without a key is created with the first limit
-- (engine/src/store/rate_limits.rs), so inserts pay nothing until then.

CREATE TABLE rate_limits (
    scope       TEXT             PRIMARY KEY,
    per_second  DOUBLE PRECISION NOT NULL,
    burst       BIGINT           NOT NULL,
    tokens      DOUBLE PRECISION NOT NULL,
    refilled_at BIGINT           NOT NULL,
    created_by  TEXT             NOT NULL,
    created_at  BIGINT           NOT NULL
);

CREATE INDEX tasks_rate_by_type ON tasks (task_type, rank DESC, id) WHERE status = 'queued' AND held = 2;
CREATE INDEX tasks_rate_by_key ON tasks (concurrency_key, rank DESC, id) WHERE status = 'queued' AND held = 2;

CREATE OR REPLACE FUNCTION drover_key_admit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A task a rate limit covers arrives rate-held: the release admits it
    -- to its key.
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM rate_limits
            WHERE scope = 'type:' || NEW.task_type OR scope = 'key:' || NEW.concurrency_key) THEN
        NEW.held := 2;
        RETURN NEW;
    END IF;
    -- One statement: a new key is made with this task admitted; a known
    -- one counts it if it has room under the task's limit (the newest
    -- limit is the key's), and is left alone when full.
    INSERT INTO concurrency_keys AS k (key, admitted, max_admitted)
        VALUES (NEW.concurrency_key, 1, NEW.concurrency_limit)
        ON CONFLICT (key) DO UPDATE SET admitted = k.admitted + 1, max_admitted = EXCLUDED.max_admitted
        WHERE k.admitted < EXCLUDED.max_admitted;
    NEW.held := CASE WHEN FOUND THEN 0 ELSE 1 END;
    RETURN NEW;
END $$;


CREATE FUNCTION drover_rate_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM rate_limits WHERE scope = 'type:' || NEW.task_type) THEN
        NEW.held := 2;
    END IF;
    RETURN NEW;
END $$;
