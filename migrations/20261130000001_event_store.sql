-- The event log: Porter's source of truth. Append-only (enforced below).
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction's id. Readers order by (tx_id, position) and read
    -- only below pg_snapshot_xmin(pg_current_snapshot()), because identities are
    -- handed out before commit and so commit out of order.
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid NOT NULL UNIQUE,
    stream_id      text NOT NULL,
    version        bigint NOT NULL CHECK (version >= 1),
    event_type     text NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version >= 1),
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- Optimistic concurrency: a second writer at the same version fails.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_global_order ON events (tx_id, position);
CREATE INDEX events_event_type ON events (event_type);

CREATE FUNCTION events_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Unique claims (username, email) written in the same transaction as the event
-- that makes them, so uniqueness never depends on a read-then-write.
CREATE TABLE unique_claims (
    kind       text NOT NULL,
    value      text NOT NULL,
    account_id uuid NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

CREATE INDEX unique_claims_account ON unique_claims (account_id);

-- How far each reader of the log has got: projector read models, the relay.
-- Written in the same transaction as the work it covers.
CREATE TABLE checkpoints (
    name       text PRIMARY KEY,
    tx_id      xid8 NOT NULL DEFAULT '0'::xid8,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Read model: one row per account, rebuilt from the log by `porter replay`.
CREATE TABLE accounts (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    email         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'active')),
    registered_at timestamptz NOT NULL,
    activated_at  timestamptz,
    emails_sent   integer NOT NULL DEFAULT 0,
    last_email_at timestamptz,
    version       bigint NOT NULL
);

-- The projector of `accounts` and the outbox relay each keep a checkpoint.
INSERT INTO checkpoints (name) VALUES ('accounts'), ('relay');
