-- 0012: the tenant's end users, who sign in on the authorization server's
-- login page (issue 15 item 3), their browser sessions and their consents.
-- Passwords are argon2id (encoded PHC string); a session cookie (tku_) is
-- stored as a keyed hash.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    email           TEXT NOT NULL,          -- lowercased
    password_hash   TEXT NOT NULL,          -- $argon2id$...
    status          TEXT NOT NULL,          -- active | disabled
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_login_at   BIGINT,
    UNIQUE (tenant_id, email)
);
CREATE INDEX users_tenant ON users (tenant_id, id);

CREATE TABLE user_sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    token_hash    TEXT NOT NULL UNIQUE,
    hash_key      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    ended_at      BIGINT                    -- signed out
);
CREATE INDEX user_sessions_user ON user_sessions (tenant_id, user_id);

-- What a user allowed a client: scopes only grow by a new consent.
CREATE TABLE oauth_consents (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    user_id          TEXT NOT NULL REFERENCES users (id),
    oauth_client_id  TEXT NOT NULL REFERENCES oauth_clients (id),
    scopes           TEXT NOT NULL,         -- JSON array
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (tenant_id, user_id, oauth_client_id)
);
