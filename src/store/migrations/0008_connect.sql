-- 0008: the connect flow (issue 18 item 3): one row per POST
-- /v1/connect/{app_id}/start, redeemed once by GET /connect/callback.
-- The state itself is never stored: only its keyed hash (HMAC under the
-- keyring's key). The PKCE code_verifier must be sent again at the token
-- endpoint, so it is sealed (ENC:v1:..., bound to this row) and registered
-- for rewrap.

CREATE TABLE connect_states (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    app_id         TEXT NOT NULL,          -- provider_apps.id of the same tenant
    label          TEXT NOT NULL,          -- the connection's label to be
    return_url     TEXT,                   -- NULL: the callback shows a page
    state_hash     TEXT NOT NULL UNIQUE,   -- keyed hash of the state (64 hex)
    code_verifier  TEXT,                   -- sealed PKCE verifier; NULL: no PKCE
    redirect_uri   TEXT NOT NULL,          -- sent in the authorization and token requests
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,        -- created_at + 10 minutes
    used_at        BIGINT                  -- set once by the callback; NULL: not redeemed
);
CREATE INDEX connect_states_tenant ON connect_states (tenant_id, id);
CREATE INDEX connect_states_expires ON connect_states (expires_at);
