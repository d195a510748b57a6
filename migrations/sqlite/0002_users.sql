-- Users, their roles and API tokens (stored as SHA-256 hashes).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL,            -- viewer | approver | operator | admin
    password_hash TEXT,                        -- argon2 PHC string; NULL = API-only user
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    label      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
