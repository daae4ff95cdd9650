-- Registrations end: superseded by a later sign-up for the same address,
-- cancelled by the address's owner ("This wasn't me"), or expired after
-- REGISTRATION_TTL. The read model shows how each ended, and which email
-- request each account is still waiting for, so the worker can find requests
-- whose job Redis lost.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('pending', 'active', 'superseded', 'cancelled', 'expired'));
ALTER TABLE accounts
    ADD COLUMN locale              text NOT NULL DEFAULT 'en',
    ADD COLUMN ended_at            timestamptz,
    ADD COLUMN outstanding_request uuid,
    ADD COLUMN outstanding_since   timestamptz;

-- The expiry sweep: oldest pending registrations first. (Index names are
-- those Postgres gives a table made LIKE this one, so a replay's swap keeps
-- them.)
CREATE INDEX accounts_registered_at_idx ON accounts (registered_at) WHERE status = 'pending';
-- The stranded-request sweep: oldest outstanding requests first.
CREATE INDEX accounts_outstanding_since_idx ON accounts (outstanding_since)
    WHERE outstanding_request IS NOT NULL;
