-- Incoming webhooks: a trigger starts a named workflow when a request
-- carrying its secret arrives at /api/v1/hooks/<name>, with the run's
-- inputs picked out of the request body by JSON pointers.
--
-- An HMAC trigger keeps its secret (the server must compute the signature);
-- a bearer trigger keeps only the secret's SHA-256.

CREATE TABLE triggers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    workflow         TEXT    NOT NULL,
    workflow_version INTEGER,                    -- NULL: the latest at each delivery
    inputs           TEXT    NOT NULL,        -- JSON object: input name -> JSON pointer into the body
    auth             TEXT    NOT NULL,        -- hmac | bearer
    secret           TEXT,                    -- hmac: the shared secret
    secret_hash      TEXT,                    -- bearer: SHA-256 of the token, hex
    prefix           TEXT    NOT NULL,        -- the secret's first characters, to tell triggers apart
    created_by       TEXT    NOT NULL,
    created_at       INTEGER    NOT NULL,
    last_fired_at    INTEGER,
    fired_count      INTEGER    NOT NULL DEFAULT 0,
    CHECK ((auth = 'hmac' AND secret IS NOT NULL) OR (auth = 'bearer' AND secret_hash IS NOT NULL))
);
