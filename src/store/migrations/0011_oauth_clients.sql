-- 0011: OAuth clients and the per-tenant scope catalogue (issue 15 item 2).
-- client_id is what the client sends: an opaque string for operator-made
-- and dynamically registered clients, the https URL of its metadata
-- document for a client ID metadata document (cached here, refetched
-- after metadata_expires_at). A confidential client's secret is an issued
-- secret (tks_) stored as a keyed hash and a preview; a dynamically
-- registered client's registration access token (tkg_) likewise.
CREATE TABLE oauth_scopes (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE oauth_clients (
    id                          TEXT PRIMARY KEY,
    tenant_id                   TEXT NOT NULL REFERENCES tenants (id),
    client_id                   TEXT NOT NULL UNIQUE,
    name                        TEXT NOT NULL,
    client_type                 TEXT NOT NULL,  -- confidential | public
    application_type            TEXT NOT NULL,  -- web | native
    token_endpoint_auth_method  TEXT NOT NULL,  -- client_secret_basic | client_secret_post | none
    redirect_uris               TEXT NOT NULL,  -- JSON array of strings
    grant_types                 TEXT NOT NULL,  -- JSON array of strings
    scopes                      TEXT NOT NULL,  -- JSON array: allowed, from oauth_scopes
    default_scopes              TEXT NOT NULL,  -- JSON array: when none is requested
    rotate_refresh              INTEGER NOT NULL DEFAULT 1,
    status                      TEXT NOT NULL,  -- active | disabled
    origin                      TEXT NOT NULL,  -- operator | dynamic | metadata_document
    secret_hash                 TEXT,           -- HMAC-SHA256, hex; NULL for public clients
    secret_hash_key             TEXT,
    secret_preview              TEXT,
    registration_hash           TEXT,           -- RFC 7592 registration access token
    registration_hash_key       TEXT,
    metadata_expires_at         BIGINT,         -- metadata documents: refetch after
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX oauth_clients_tenant ON oauth_clients (tenant_id, id);
-- client authentication and RFC 7592 find a row by its keyed hash
CREATE INDEX oauth_clients_secret ON oauth_clients (secret_hash);
CREATE INDEX oauth_clients_registration ON oauth_clients (registration_hash);
