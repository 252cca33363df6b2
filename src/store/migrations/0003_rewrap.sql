-- 0003: the keyring's rewrap job. One row (id 'rewrap') holds the state of
-- the latest job, so that it resumes after a crash or restart; the lease
-- columns let one node at a time work on it (tk_lease_claim on due_at,
-- which is NULL when there is nothing to do).

CREATE TABLE keyring_rewrap (
    id               TEXT PRIMARY KEY,    -- always 'rewrap'
    tenant_id        TEXT,                -- unused (the lease primitive returns it)
    state            TEXT NOT NULL,       -- running | done
    target_version   BIGINT NOT NULL,     -- the data key version values are rewrapped to
    total            BIGINT NOT NULL,     -- sealed values counted at start
    done             BIGINT NOT NULL,     -- values visited so far (rewrapped, current or failed)
    rewrapped        BIGINT NOT NULL,     -- of those, values re-sealed
    failed           BIGINT NOT NULL,     -- values that did not open (left as they were)
    first_failed_row TEXT,                -- "<table>.<column>:<row id>" of the first of those
    pos_table        BIGINT NOT NULL,     -- cursor: index into the sealed-column registry
    pos_id           TEXT NOT NULL,       --         and the last row id done in that table
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    due_at           BIGINT,              -- started_at while running, NULL when done
    lease_owner      TEXT,
    lease_until      BIGINT
);
