//! Building the shadow: folds the whole log into it while the live projector
//! keeps running, reading the next batch on one connection while the current
//! one is applied on another.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Progress, ReplayError};
use crate::{
    features::accounts::read_model::{self, Table},
    platform::store::{Cursor, RecordedEvent, read_committed_after},
};

/// How often the build looks again when the log's readable end has not yet
/// reached the events committed before the replay started.
const HORIZON_POLL: Duration = Duration::from_millis(20);

type Batch = Result<Vec<RecordedEvent>, sqlx::Error>;

/// Folds the log into the shadow, at least up to `target`. One task reads the
/// next batch while this one applies the current, on two connections, so
/// Postgres reads and writes overlap. Returns the shadow's cursor and the
/// events applied.
pub(super) async fn build(
    pool: &PgPool,
    batch_size: i64,
    target: Cursor,
    progress: &mut dyn Progress,
    cancel: &CancellationToken,
) -> Result<(Cursor, u64), ReplayError> {
    // One batch waiting while one is applied and the next is read: enough to
    // overlap reads and writes, and memory stays at about three batches.
    let (sender, mut batches) = mpsc::channel::<Batch>(1);
    let reader = tokio::spawn(read_ahead(pool.clone(), batch_size, target, sender));
    // Dropping the reader's handle would not stop it; abort it on every exit.
    let _reader = AbortOnDrop(reader);
    let mut cursor = Cursor::default();
    let mut applied = 0u64;
    loop {
        let batch = tokio::select! {
            batch = batches.recv() => batch,
            () = cancel.cancelled() => return Err(ReplayError::Interrupted),
        };
        let Some(batch) = batch else { break };
        let events = batch?;
        let Some(last) = events.last().map(RecordedEvent::cursor) else {
            break;
        };
        let mut tx = pool.begin().await?;
        // The shadow is rebuilt from scratch after a crash, so its batches
        // need not wait for the WAL flush.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        read_model::apply(&mut tx, Table::Shadow, &events).await?;
        tx.commit().await?;
        cursor = last;
        applied += events.len() as u64;
        progress.applied(applied);
        if cancel.is_cancelled() {
            return Err(ReplayError::Interrupted);
        }
    }
    Ok((cursor, applied))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads batches until it has passed `target`, the last event committed when
/// the replay started. The log is read only below the oldest running
/// transaction, so while some transaction anywhere on the server is older
/// than the newest events, a read can come back empty before the end; it
/// waits that out rather than stop early and swap in a table that is behind.
async fn read_ahead(pool: PgPool, batch_size: i64, target: Cursor, sender: mpsc::Sender<Batch>) {
    let mut cursor = Cursor::default();
    loop {
        let mut batch = read_committed_after(&pool, cursor, batch_size).await;
        if let Ok(events) = &mut batch {
            // Folding needs no metadata; drop it before the batch waits.
            for event in events.iter_mut() {
                event.metadata = serde_json::Value::Null;
            }
        }
        let next = match &batch {
            Ok(events) if events.is_empty() && cursor < target => {
                if sender.is_closed() {
                    return;
                }
                tokio::time::sleep(HORIZON_POLL).await;
                continue;
            }
            Ok(events) => events.last().map(RecordedEvent::cursor),
            Err(_) => None,
        };
        if sender.send(batch).await.is_err() {
            return;
        }
        match next {
            Some(next) => cursor = next,
            // Caught up (an empty batch was sent and ends the build) or failed.
            None => return,
        }
    }
}
