-- Agent identity: named enrollment tokens with a lifecycle, and agents that
-- prove who they are across restarts (a key kept in their state directory).

CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  TEXT    NOT NULL UNIQUE,           -- SHA-256 of the token
    prefix      TEXT    NOT NULL,                  -- first characters, to recognise it
    task_types  TEXT,                              -- JSON array; NULL = any
    labels      TEXT,                              -- JSON array; NULL = any
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,                           -- NULL = never
    revoked_at  INTEGER
);

-- The SHA-256 of the agent's own key (NULL for agents that sent none) and
-- the enrollment token it last registered with.
ALTER TABLE agents ADD COLUMN key_hash TEXT;
ALTER TABLE agents ADD COLUMN enrollment_id INTEGER REFERENCES enrollment_tokens (id);
CREATE UNIQUE INDEX agents_by_key ON agents (key_hash) WHERE key_hash IS NOT NULL;
