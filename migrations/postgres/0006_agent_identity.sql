-- Agent identity: named enrollment tokens with a lifecycle, and agents that
-- prove who they are across restarts (a key kept in their state directory).

CREATE TABLE enrollment_tokens (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  TEXT    NOT NULL UNIQUE,           -- SHA-256 of the token
    prefix      TEXT    NOT NULL,                  -- first characters, to recognise it
    task_types  TEXT,                              -- JSON array; NULL = any
    labels      TEXT,                              -- JSON array; NULL = any
    created_by  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT,                            -- NULL = never
    revoked_at  BIGINT
);

-- The SHA-256 of the agent's own key (NULL for agents that sent none) and
-- the enrollment token it last registered with.
ALTER TABLE agents ADD COLUMN key_hash TEXT;
ALTER TABLE agents ADD COLUMN enrollment_id BIGINT REFERENCES enrollment_tokens (id);
CREATE UNIQUE INDEX agents_by_key ON agents (key_hash) WHERE key_hash IS NOT NULL;

-- A lease token: 64 bits from the server's strong random source (the
-- random bytes of two version 4 UUIDs), so a token cannot be guessed from
-- the ones an agent was given. Claims still count in tasks.claims. One
-- SELECT without FROM, so the planner inlines it into the claim (2.6 µs a
-- token here, where a FROM clause cost 4 µs).
CREATE FUNCTION drover_lease_token() RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
    SELECT ('x' || encode(substring(uuid_send(gen_random_uuid()) FROM 1 FOR 4)
                       || substring(uuid_send(gen_random_uuid()) FROM 13 FOR 4), 'hex'))::bit(64)::bigint
$$;
