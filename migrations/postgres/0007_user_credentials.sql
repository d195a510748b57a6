-- Credentials with a lifecycle: API tokens get an id, a shown prefix, an
-- optional expiry, a last-use time and a revocation mark (kept as a
-- tombstone so a bootstrap token cannot be added back); users can be
-- disabled.
ALTER TABLE api_tokens ADD COLUMN id BIGSERIAL UNIQUE;
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';   -- api | session
ALTER TABLE api_tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
UPDATE api_tokens SET kind = 'session' WHERE label = 'session' AND expires_at IS NOT NULL;
CREATE INDEX api_tokens_user ON api_tokens (user_id);

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
