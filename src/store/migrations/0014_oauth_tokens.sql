-- 0014: what the token endpoint redeems (issue 15 item 4). Codes (tka_)
-- and refresh tokens (tkr_) are stored as keyed hashes; a code is consumed
-- by UPDATE ... WHERE used_at IS NULL. Refresh tokens form families (one
-- per grant): reuse of a rotated token revokes its family. Revocations
-- (of an access token's jti or of a whole family) are rows the nodes poll
-- by id to keep their in-memory revocation sets current; a row is dropped
-- after expires_at (the last moment what it revokes could be valid).
CREATE TABLE oauth_codes (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    flow_id           TEXT NOT NULL REFERENCES oauth_flows (id),
    oauth_client_id   TEXT NOT NULL REFERENCES oauth_clients (id),
    code_hash         TEXT NOT NULL UNIQUE,
    hash_key          TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    used_at           BIGINT,
    family_id         TEXT                   -- what was issued from it (revoked on replay)
);
CREATE INDEX oauth_codes_flow ON oauth_codes (flow_id);

CREATE TABLE oauth_refresh_tokens (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    family_id         TEXT NOT NULL,
    parent_id         TEXT,                  -- the token this one replaced
    flow_id           TEXT,
    oauth_client_id   TEXT NOT NULL REFERENCES oauth_clients (id),
    user_id           TEXT,
    token_hash        TEXT NOT NULL UNIQUE,
    hash_key          TEXT NOT NULL,
    preview           TEXT NOT NULL,
    scopes            TEXT NOT NULL,         -- JSON array
    resource          TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT,
    rotated_at        BIGINT,
    replaced_by       TEXT,
    revoked_at        BIGINT
);
CREATE INDEX oauth_refresh_tokens_family ON oauth_refresh_tokens (family_id);

CREATE TABLE oauth_revocations (
    id          TEXT PRIMARY KEY,            -- UUIDv7: the nodes' poll cursor
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    what        TEXT NOT NULL,               -- jti | family
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX oauth_revocations_expiry ON oauth_revocations (expires_at);
