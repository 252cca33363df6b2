-- 0006: provider apps (issue 18): a tenant's registrations with the
-- providers of the catalogue (src/upstream/providers/).

CREATE TABLE provider_apps (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    provider       TEXT NOT NULL,          -- a catalogue entry's name
    name           TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    client_secret  TEXT,                   -- sealed (ENC:v1:...), bound to this row; NULL: none
    scopes         TEXT NOT NULL,          -- JSON array of strings
    environment    TEXT NOT NULL,          -- production | sandbox
    params         TEXT NOT NULL,          -- JSON object of strings
    overrides      TEXT NOT NULL,          -- JSON object: the catalogue members this app overrides
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX provider_apps_tenant ON provider_apps (tenant_id, id);
