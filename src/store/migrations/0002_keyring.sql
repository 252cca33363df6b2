-- 0002: the keyring. Keys are sealed under the master key, which is never
-- stored: it is split into Shamir shares and, optionally, wrapped by an
-- auto-unseal key file kept outside the store.

CREATE TABLE keyring (
    id            BIGINT PRIMARY KEY,     -- always 1: one keyring per installation
    created_at    BIGINT NOT NULL,
    shares        BIGINT NOT NULL,
    threshold     BIGINT NOT NULL,
    check_value   TEXT NOT NULL,          -- a known text sealed under the master key
    auto_wrapped  TEXT,                   -- the master key sealed under the key file, or NULL
    auto_key_id   TEXT,
    data_version  BIGINT NOT NULL         -- the data key version new values are sealed with
);

CREATE TABLE keyring_keys (
    kind        TEXT NOT NULL,            -- data | hmac
    version     BIGINT NOT NULL,
    sealed      TEXT NOT NULL,            -- ENC:v1:0:... under the master key
    key_id      TEXT NOT NULL,            -- first 8 bytes of SHA-256(key), hex
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, version)
);
