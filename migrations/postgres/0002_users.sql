-- Users, their roles and API tokens (stored as SHA-256 hashes).
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL,            -- viewer | approver | operator | admin
    password_hash TEXT,                        -- argon2 PHC string; NULL = API-only user
    created_at    BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT    PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    label      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
