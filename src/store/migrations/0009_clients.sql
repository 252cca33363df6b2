-- 0009: machine clients and their tokens (issue 14). A client token (tkc_)
-- is stored as a keyed hash and a preview, like an operator token. A
-- rotated token keeps working until grace_ends_at; after that it counts as
-- revoked. Every write that takes a credential away or changes what a
-- validation answers (revoke, rotate, a client's status, name or email)
-- bumps the tenant's auth epoch (0005) in its transaction.

CREATE TABLE clients (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    name               TEXT NOT NULL,
    email              TEXT,                   -- NULL: none
    status             TEXT NOT NULL,          -- active | suspended | disabled
    metadata           TEXT NOT NULL,          -- JSON object of strings
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    status_changed_at  BIGINT                  -- NULL: never changed since creation
);
CREATE INDEX clients_tenant ON clients (tenant_id, id);

CREATE TABLE client_tokens (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    client_id      TEXT NOT NULL REFERENCES clients (id),
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,       -- HMAC-SHA256 under a local key, hex
    hash_key       TEXT NOT NULL,              -- which key made token_hash
    preview        TEXT NOT NULL,              -- tkc_abcd...wxyz
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    grace_ends_at  BIGINT,                     -- rotated: valid until then
    replaced_by    TEXT                        -- rotated: the new token's id
);
CREATE INDEX client_tokens_client ON client_tokens (tenant_id, client_id, id);

-- Agents: what a client runs (issue 14 item 4), registered with a client
-- token, one row per client and logical_agent_id. stale is set by the
-- sweep (one node at a time, by the lease on agent_sweep) when no
-- heartbeat came for agent_stale_after intervals, and cleared by the next
-- heartbeat; each flip is a conditional UPDATE, so its event is written
-- once across nodes.
CREATE TABLE agents (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    client_id          TEXT NOT NULL REFERENCES clients (id),
    logical_agent_id   TEXT NOT NULL,
    hostname           TEXT NOT NULL,
    version            TEXT NOT NULL,
    reported_status    TEXT NOT NULL,          -- the agent's own, from its last heartbeat
    stale              INTEGER NOT NULL DEFAULT 0,
    stale_since        BIGINT,
    registered_at      BIGINT NOT NULL,
    last_heartbeat_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, client_id, logical_agent_id)
);
CREATE INDEX agents_tenant ON agents (tenant_id, id);
CREATE INDEX agents_heartbeat ON agents (stale, last_heartbeat_at);

-- The sweep's lease (tk_lease_claim): one row.
CREATE TABLE agent_sweep (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT,                         -- unused (the lease primitive returns it)
    due_at       BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT
);
INSERT INTO agent_sweep (id, due_at) VALUES ('sweep', 0);
