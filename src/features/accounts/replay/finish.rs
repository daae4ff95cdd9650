//! The end of a replay: one transaction that pauses the live projector,
//! catches the shadow up with what committed during the build, and then
//! either swaps it in or (dry run) compares it with the live table and rolls
//! back.

use std::time::{Duration, Instant};

use sqlx::{PgPool, Postgres, Transaction};

use super::{
    Phase, Progress, ReplayError, ReplayOptions,
    diff::{Diff, compare},
    shadow::{make_durable, swap_tables},
};
use crate::{
    features::accounts::{
        apply_next,
        read_model::{self, Table},
    },
    platform::store::{self, Cursor, save_checkpoint},
};

/// How long the swap waits for its locks (the checkpoint row, then the live
/// table for the rename) before giving up with the live table untouched. A
/// rename queued behind a long query would otherwise block every reader that
/// arrives after it.
const SWAP_LOCK_TIMEOUT: &str = "10s";

/// What [`finish`] did, for the [`super::ReplayReport`].
pub(super) struct Finished {
    pub(super) events: u64,
    pub(super) caught_up: u64,
    pub(super) rows: i64,
    pub(super) cursor: Cursor,
    pub(super) paused: Duration,
    pub(super) diff: Option<Diff>,
    pub(super) swapped: bool,
}

/// The swap (or, for a dry run, the comparison), in one transaction that
/// holds the checkpoint row and so pauses the live projector.
pub(super) async fn finish(
    pool: &PgPool,
    options: &ReplayOptions,
    built_to: Cursor,
    built: u64,
    progress: &mut dyn Progress,
) -> Result<Finished, ReplayError> {
    if !options.dry_run {
        make_durable(pool).await?;
    }
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    // Not SKIP LOCKED: wait for a projector round in flight to commit, then
    // hold the row so the projector's next rounds skip.
    let live = store::lock_checkpoint_waiting(&mut tx, read_model::CHECKPOINT).await?;
    let paused = Instant::now();
    progress.phase(Phase::CatchingUp);
    let (cursor, caught_up) = catch_up(
        &mut tx,
        Table::Shadow,
        built_to,
        None,
        options.batch_size,
        &mut |n| progress.applied(built + n),
    )
    .await?;
    let events = built + caught_up;
    if live > cursor {
        // Both read below the same ever-rising horizon, so the shadow has at
        // least every event the projector applied; this would be a bug.
        return Err(ReplayError::CheckpointAhead {
            live,
            rebuilt: cursor,
        });
    }
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        Table::Shadow.name()
    )))
    .fetch_one(&mut *tx)
    .await?;
    if options.dry_run {
        progress.phase(Phase::Comparing);
        // Bring the live table to the same cursor inside this transaction,
        // which is rolled back: a lagging projector is not a difference.
        catch_up(
            &mut tx,
            Table::Live,
            live,
            Some(cursor),
            options.batch_size,
            &mut |_| {},
        )
        .await?;
        let diff = compare(&mut tx).await?;
        tx.rollback().await?;
        return Ok(Finished {
            events,
            caught_up,
            rows,
            cursor,
            paused: paused.elapsed(),
            diff: Some(diff),
            swapped: false,
        });
    }
    progress.phase(Phase::Swapping);
    swap_tables(&mut tx).await?;
    save_checkpoint(&mut tx, read_model::CHECKPOINT, cursor).await?;
    tx.commit().await?;
    Ok(Finished {
        events,
        caught_up,
        rows,
        cursor,
        paused: paused.elapsed(),
        diff: None,
        swapped: true,
    })
}

/// Applies to `table` the committed events after `from`, up to `until`
/// (inclusive) or to the end, in projector rounds. Returns the new cursor
/// and the events applied.
async fn catch_up(
    tx: &mut Transaction<'_, Postgres>,
    table: Table,
    from: Cursor,
    until: Option<Cursor>,
    batch_size: i64,
    on_batch: &mut dyn FnMut(u64),
) -> Result<(Cursor, u64), ReplayError> {
    let mut cursor = from;
    let mut applied = 0u64;
    while let Some(round) = apply_next(tx, table, cursor, until, batch_size).await? {
        cursor = round.cursor;
        applied += round.applied as u64;
        on_batch(applied);
        if !round.more {
            break;
        }
    }
    Ok((cursor, applied))
}
