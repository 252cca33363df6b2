-- 0013: authorization flows, stage by stage (issue 15 item 6). One row per
-- authorization request that named a known client; the request's
-- parameters as accepted, the stage reached with its time, and for a
-- failed flow the stage, the RFC error code and the sentence that names
-- the difference. A flow that never reached token_exchanged is stuck.
CREATE TABLE oauth_flows (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    oauth_client_id        TEXT NOT NULL REFERENCES oauth_clients (id),
    client_id              TEXT NOT NULL,    -- as sent (for filtering)
    redirect_uri           TEXT NOT NULL,
    scopes                 TEXT NOT NULL,    -- JSON array, as granted
    oauth_state            TEXT,             -- the client's state, echoed
    code_challenge         TEXT,
    code_challenge_method  TEXT,
    resource               TEXT,             -- RFC 8707: the audience
    nonce                  TEXT,
    user_id                TEXT,
    stage                  TEXT NOT NULL,    -- authorize_received | login | consent | code_issued | token_exchanged | token_issued
    status                 TEXT NOT NULL,    -- active | completed | failed
    failed_stage           TEXT,
    error                  TEXT,             -- RFC error code
    reason                 TEXT,             -- the sentence
    next_step              TEXT,             -- what to change, when the failing stage knew
    expires_at             BIGINT,           -- created_at + oauth_flow_ttl (NULL: none)
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    login_at               BIGINT,
    consent_at             BIGINT,
    code_issued_at         BIGINT,
    token_exchanged_at     BIGINT,
    token_issued_at        BIGINT
);
CREATE INDEX oauth_flows_tenant ON oauth_flows (tenant_id, id);
CREATE INDEX oauth_flows_client ON oauth_flows (tenant_id, client_id, id);
CREATE INDEX oauth_flows_status ON oauth_flows (tenant_id, status, id);
