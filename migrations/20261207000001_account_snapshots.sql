-- Snapshots of account state: a load starts from the stream's snapshot and
-- folds only the events after its version, so loading an account costs the
-- same however long its history. A cache beside the log (the log decides):
-- a row of another schema is ignored, and deleting every row is safe.
-- `state` holds the password hash, like the events it was folded from.
CREATE TABLE account_snapshots (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL,
    schema    integer NOT NULL,
    state     jsonb NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now()
);
