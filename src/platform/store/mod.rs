//! The event store: Postgres as an append-only log of account streams.
//!
//! Writers append to one stream at an expected version; the
//! `UNIQUE (stream_id, version)` constraint turns a lost race into a typed
//! [`AppendError::Conflict`] instead of a lost update. Unique claims (username,
//! email) are inserted in the same transaction, so uniqueness never rests on a
//! read-then-write, and released only in the transaction that appends the
//! event ending their registration ([`Append::releases_claims`]). Readers of
//! the whole log use [`read_committed_after`], which is safe against
//! identities that commit out of order.
//!
//! Every statement on `events`, `checkpoints`, `unique_claims` and
//! `account_snapshots` is in this module (`append`, `read`, `checkpoints`,
//! `claims`, `snapshots`); everything above it reads the log as decoded
//! [`RecordedEvent`]s and cursors, never through SQL of its own or payload
//! JSON paths that would bypass decoding and upcasting.

use uuid::Uuid;

mod append;
mod checkpoints;
mod claims;
mod privileges;
mod read;
mod recorded;
mod snapshots;

pub use append::{Append, AppendError, EventMetadata, NewEvent, append, append_all, append_all_in};
pub use checkpoints::{
    Lag, advance_checkpoint, checkpoint_lag, create_checkpoint, lock_checkpoint,
    lock_checkpoint_waiting, read_checkpoint, remove_checkpoint, save_checkpoint,
};
pub use claims::{Claim, ClaimKind, claim_holder, lock_address};
pub use privileges::grant_runtime_privileges;
pub use read::{
    EventFilter, count_events, cursor_at, cursor_before_event, last_committed, load_stream,
    load_streams, read_committed_after, read_events, read_horizon,
};
pub use recorded::{Cursor, RecordedEvent, TxId};
pub use snapshots::{StoredSnapshot, load_snapshot, save_snapshot};

/// The stream of one account.
pub fn account_stream(account_id: Uuid) -> String {
    format!("account-{account_id}")
}
