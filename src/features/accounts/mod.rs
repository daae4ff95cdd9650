//! Read models: tables derived from the event log, for queries and operators.
//!
//! A projector reads committed events in global order after its checkpoint,
//! applies a batch to its table and moves the checkpoint in the same
//! transaction, so a crash can neither skip nor double-apply an event. The
//! checkpoint row is taken with `FOR UPDATE SKIP LOCKED`: when several worker
//! processes run, one projects and the others wait for the next round.

use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    domain::DecodeError,
    platform::store::{
        self, Cursor, RecordedEvent, lock_checkpoint, read_committed_after, save_checkpoint,
    },
};

pub mod expiry;
pub mod projector;
pub mod read_model;
pub mod replay;

pub use store::Lag;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A stored event this version of Porter cannot read. Projection stops
    /// here rather than skip it and build a wrong read model.
    #[error("cannot project event at position {position} ({event_type}): {source}")]
    Undecodable {
        position: i64,
        event_type: String,
        source: DecodeError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// How many events one projection round reads at most.
pub const BATCH_SIZE: i64 = 1000;

/// Applies the next batch of committed events to the `accounts` read model.
/// Returns how many events it applied (0 when caught up or when another
/// process holds the checkpoint).
#[tracing::instrument(skip_all, name = "project_accounts")]
pub async fn project_accounts(pool: &PgPool, batch_size: i64) -> Result<usize, ProjectionError> {
    let mut tx = pool.begin().await?;
    let Some(cursor) = lock_checkpoint(&mut tx, read_model::CHECKPOINT).await? else {
        return Ok(0);
    };
    let Some(round) =
        apply_next(&mut tx, read_model::Table::Live, cursor, None, batch_size).await?
    else {
        return Ok(0);
    };
    save_checkpoint(&mut tx, read_model::CHECKPOINT, round.cursor).await?;
    tx.commit().await?;
    Ok(round.applied)
}

/// What one round applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// The last event applied.
    pub cursor: Cursor,
    pub applied: usize,
    /// More committed events may be waiting (the batch was full and `until`
    /// not reached).
    pub more: bool,
}

/// One projection round inside `tx`: applies to `table` the next
/// `batch_size` committed events after `from`, none past `until`. `None`
/// when there was nothing to apply. The live projector and a replay's
/// catch-up both run it; the caller moves the checkpoint.
pub async fn apply_next(
    tx: &mut Transaction<'_, Postgres>,
    table: read_model::Table,
    from: Cursor,
    until: Option<Cursor>,
    batch_size: i64,
) -> Result<Option<Round>, ProjectionError> {
    let mut events = read_committed_after(&mut **tx, from, batch_size).await?;
    let full = events.len() as i64 == batch_size;
    if let Some(until) = until {
        events.retain(|event| event.cursor() <= until);
    }
    let Some(cursor) = events.last().map(RecordedEvent::cursor) else {
        return Ok(None);
    };
    read_model::apply(tx, table, &events).await?;
    Ok(Some(Round {
        cursor,
        applied: events.len(),
        more: full && until != Some(cursor),
    }))
}

/// The lag of the read model whose checkpoint is `name`; `None` when there is
/// no such checkpoint.
pub async fn lag(pool: &PgPool, name: &str) -> Result<Option<Lag>, sqlx::Error> {
    store::checkpoint_lag(pool, name).await
}
