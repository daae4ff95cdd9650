-- Webhook subscriptions: where public events are delivered, signed, in log
-- order. Each subscription's place in the log is its checkpoint row
-- (`checkpoints.name = 'webhook:<id>'`), written with the lease check below.
CREATE TABLE webhook_subscriptions (
    id                    uuid PRIMARY KEY,
    url                   text NOT NULL,
    -- The public types delivered; NULL for every type.
    event_types           text[],
    -- `whsec_` secrets. Kept in clear because signing needs them; the
    -- runtime role reads them, nothing prints them after `add` and
    -- `rotate-secret`.
    secret                text NOT NULL,
    -- After a rotation the old secret also signs until this time.
    previous_secret       text,
    previous_secret_until timestamptz,
    state                 text NOT NULL DEFAULT 'active'
                          CHECK (state IN ('active', 'paused', 'disabled')),
    state_reason          text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- Bumped by `replay`: a deliverer holding an older one must reload its
    -- checkpoint instead of saving over the operator's.
    generation            bigint NOT NULL DEFAULT 0,
    delivered             bigint NOT NULL DEFAULT 0,
    last_delivered_at     timestamptz,
    -- Since when every attempt has failed; NULL while deliveries succeed.
    failing_since         timestamptz,
    failed_attempts       bigint NOT NULL DEFAULT 0,
    last_error            text,
    -- The worker process delivering it, until `lease_until` (database time).
    lease_owner           text,
    lease_until           timestamptz
);
