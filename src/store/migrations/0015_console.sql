-- 0015: the admin console's sessions (issue 17). An operator signs in with
-- an operator token; the session acts as that token until it is ended
-- (sign-out), idle too long, past its lifetime, or the token is revoked.
-- The cookie (tkw_) is stored as a keyed hash only.
CREATE TABLE console_sessions (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    operator_token_id  TEXT NOT NULL REFERENCES operator_tokens (id),
    token_hash         TEXT NOT NULL UNIQUE,
    hash_key           TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    last_seen_at       BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    ended_at           BIGINT,               -- signed out
    remote_addr        TEXT NOT NULL
);
CREATE INDEX console_sessions_token ON console_sessions (operator_token_id);
