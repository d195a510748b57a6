-- Dashboard sessions are API tokens that expire (API tokens have no expiry).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
