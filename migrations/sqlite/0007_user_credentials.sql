-- Credentials with a lifecycle: API tokens get an id, a shown prefix, an
-- optional expiry, a last-use time and a revocation mark (kept as a
-- tombstone so a bootstrap token cannot be added back); users can be
-- disabled. SQLite cannot add a primary key in place: the table is rebuilt.
CREATE TABLE api_tokens_v7 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT    NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    label        TEXT    NOT NULL,
    kind         TEXT    NOT NULL DEFAULT 'api',   -- api | session
    prefix       TEXT    NOT NULL DEFAULT '',      -- first characters, for recognising a token
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

INSERT INTO api_tokens_v7 (token_hash, user_id, label, kind, created_at, expires_at)
SELECT token_hash, user_id, label,
       CASE WHEN label = 'session' AND expires_at IS NOT NULL THEN 'session' ELSE 'api' END,
       created_at, expires_at
FROM api_tokens;

DROP TABLE api_tokens;
ALTER TABLE api_tokens_v7 RENAME TO api_tokens;
CREATE INDEX api_tokens_user ON api_tokens (user_id);

ALTER TABLE users ADD COLUMN disabled_at INTEGER;
