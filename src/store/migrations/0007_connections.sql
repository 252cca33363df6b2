-- 0007: upstream connections (issue 18): a tenant's tokens at one of its
-- provider apps. Both tokens are sealed (ENC:v1:...), bound to the row
-- (connections.access_token / connections.refresh_token); registered for
-- rewrap after provider_apps.client_secret. Times are ms since the epoch.

CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    app_id             TEXT NOT NULL REFERENCES provider_apps (id),
    label              TEXT NOT NULL,
    access_token       TEXT NOT NULL,      -- sealed
    refresh_token      TEXT,               -- sealed; NULL: none
    token_type         TEXT NOT NULL,
    scopes             TEXT NOT NULL,      -- JSON array of strings
    status             TEXT NOT NULL,      -- ok | refresh_error | needs_reconnect | disabled
    expires_at         BIGINT NOT NULL,    -- of the access token
    refresh_expires_at BIGINT,             -- of the refresh token; NULL: unknown
    issued_at          BIGINT NOT NULL,    -- when the current access token was stored
    last_refresh_at    BIGINT,
    next_refresh_at    BIGINT,             -- due for the engine; NULL: never automatically
    last_error_code    TEXT,
    last_error         TEXT,
    failure_count      BIGINT NOT NULL,
    version            BIGINT NOT NULL,    -- compare-and-swap fence of every write
    lease_owner        TEXT,               -- store leases (tk_lease_claim)
    lease_until        BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX connections_tenant ON connections (tenant_id, id);
CREATE INDEX connections_app ON connections (tenant_id, app_id);
CREATE INDEX connections_due ON connections (next_refresh_at);
