-- 0005: authentication off the disk (issue 16 item 3). Each tenant has an
-- auth epoch, bumped in the same transaction as every write that can take
-- a credential away or change what it may do (revoke, role change). The
-- value comes from one clock row, so epochs are unique and, because the
-- clock row stays locked until the writing transaction commits, they
-- commit in increasing order: a node that polls "tenants whose auth_seq is
-- above the last one I saw" never misses a change.
ALTER TABLE tenants ADD COLUMN auth_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tenants_auth_seq ON tenants (auth_seq);

CREATE TABLE auth_clock (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
INSERT INTO auth_clock (id, seq) VALUES (1, 0);
