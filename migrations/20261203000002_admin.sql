-- Operators block and unblock active accounts through the admin API.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('pending', 'active', 'superseded', 'cancelled', 'expired', 'blocked'));
ALTER TABLE accounts ADD COLUMN blocked_at timestamptz;

-- The admin API's listing pages through accounts in registration order.
CREATE INDEX accounts_registered_at_id_idx ON accounts (registered_at, id);

-- API keys of the application that uses Porter. Only SHA-256 of a key is
-- stored, so a dump of this table opens nothing; a key is shown once, when
-- it is created.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
