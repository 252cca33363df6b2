-- 0001: tenants, operator tokens, the event log.
-- Times are BIGINT milliseconds since the epoch; ids are UUIDv7 text.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    -- the audit chain's head: sequence and hash of the tenant's newest event
    event_seq   BIGINT NOT NULL DEFAULT 0,
    event_head  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE operator_tokens (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'admin',
    token_hash    TEXT NOT NULL UNIQUE,   -- HMAC-SHA256 under a local key, hex
    hash_key      TEXT NOT NULL,          -- which key made token_hash
    preview       TEXT NOT NULL,          -- tko_abcd...wxyz
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    expires_at    BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX operator_tokens_tenant ON operator_tokens (tenant_id);

CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    seq           BIGINT NOT NULL,        -- per tenant, gapless; cursor for paging
    at            BIGINT NOT NULL,
    trace_id      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    subject_type  TEXT,
    subject_id    TEXT,
    message       TEXT NOT NULL,
    detail        TEXT,                   -- JSON object, masked
    latency_us    BIGINT,
    node          TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    UNIQUE (tenant_id, seq)
);
CREATE INDEX events_kind ON events (tenant_id, kind, seq);
CREATE INDEX events_subject ON events (tenant_id, subject_id, seq);
CREATE INDEX events_at ON events (tenant_id, at);
