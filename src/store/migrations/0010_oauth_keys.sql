-- 0010: the authorization server's signing keys (issue 15 item 1). Node-wide
-- (tenant_id is the default tenant's). The private key is sealed
-- (oauth_signing_keys.private_key, registered for rewrap); the public JWK is
-- in clear so that /oauth2/jwks answers while sealed. A key is published
-- (in the JWKS) from created_at, signs from active_at, stops signing at
-- retired_at and leaves the JWKS at unpublish_at (its last token's expiry).
-- The row is deleted by the next rotation after unpublish_at.
CREATE TABLE oauth_signing_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    kid           TEXT NOT NULL UNIQUE,
    alg           TEXT NOT NULL,            -- ES256 | RS256 | EdDSA
    public_jwk    TEXT NOT NULL,            -- JSON object, in clear
    private_key   TEXT NOT NULL,            -- sealed PKCS#8 DER
    created_at    BIGINT NOT NULL,
    active_at     BIGINT NOT NULL,          -- signs from then (after being published)
    retired_at    BIGINT,                   -- NULL: may still sign
    unpublish_at  BIGINT,                   -- NULL: published until retired + token lifetime
    generation    BIGINT NOT NULL UNIQUE    -- 1, 2, ...: two nodes rotating at once, one wins
);
CREATE INDEX oauth_signing_keys_active ON oauth_signing_keys (active_at);
