-- 0004: the event log hardened (issue 13): indexes for every filter, the
-- base of a pruned chain, and the keyed link of each event.

-- GET /v1/events filters on action, outcome and source (and kind, subject,
-- since), newest first by seq: one index per filter, ending in seq.
CREATE INDEX events_action ON events (tenant_id, action, seq);
CREATE INDEX events_outcome ON events (tenant_id, outcome, seq);
CREATE INDEX events_source ON events (tenant_id, source, seq);
CREATE INDEX events_at_seq ON events (tenant_id, at, seq);
DROP INDEX IF EXISTS events_at;

-- Retention deletes the oldest events; the chain then starts after
-- event_base_seq, from event_base_hash (the hash of the last deleted event).
ALTER TABLE tenants ADD COLUMN event_base_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN event_base_hash TEXT NOT NULL DEFAULT '';

-- HMAC-SHA256 of the event's link (tenant, seq, hash) under a key the
-- database does not hold (the keyring's HMAC key, domain-separated), and
-- the id of that key. NULL for events written while the keyring was sealed.
ALTER TABLE events ADD COLUMN mac TEXT;
ALTER TABLE events ADD COLUMN mac_key TEXT;
