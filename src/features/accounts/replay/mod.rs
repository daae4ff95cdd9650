//! Replay: rebuild a read model from the first event and swap it in (`porter
//! replay`).
//!
//! The rebuild goes into a shadow table (`accounts_shadow`, created `LIKE
//! accounts INCLUDING ALL`) through the same batched
//! [`super::read_model::apply`] the live projector uses, reading the log with
//! [`crate::platform::store::read_committed_after`] in `(tx_id, position)` order; the
//! catch-up before the swap is the projector's own round
//! ([`super::apply_next`]) run against the shadow. Progress is reported to a
//! [`Progress`]; the CLI draws it and prints the [`ReplayReport`]. The live
//! table is not touched while the shadow is built, so an interrupted replay
//! (Ctrl-C, a crash, a dropped future) leaves it as it was; the next replay
//! drops the leftover shadow and starts over.
//!
//! The swap is one transaction: lock the read model's checkpoint row `FOR
//! UPDATE` (the live projector takes it `SKIP LOCKED`, so it pauses), apply to
//! the shadow whatever committed since its cursor, rename the shadow over the
//! live table, drop the old one, and move the checkpoint to the shadow's
//! cursor. Readers see the old table or the new one, never a mix, and the
//! projector resumes exactly after the last event the new table holds.
//!
//! Replay has no side effects: it writes only the shadow table and the
//! checkpoint. It enqueues no job, writes nothing to Redis and sends no
//! email, because it never runs a command; it only folds recorded events.
//!
//! An event this Porter cannot decode stops the replay with an error naming
//! its position and type, before anything is swapped.

mod build;
mod diff;
mod finish;
mod shadow;

use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

pub use self::diff::{Change, Diff};
use self::{
    build::build,
    finish::finish,
    shadow::{create_shadow, drop_shadow},
};
use super::ProjectionError;
use crate::platform::store::{self, Cursor};

/// Events read and applied per shadow transaction. Each batch costs three
/// statements whatever its size, and an account's events that fall in one
/// batch become one row write, so bigger batches are faster. Replaying 1M
/// synthetic events (the test-support generator) on a shared 2-core machine:
/// 10 000 gave 70 000–85 000 events/s, 20 000 gave 77 000–125 000, 50 000
/// gave 105 000–138 000. About three batches are in memory at once, roughly
/// 10 KiB per event with sqlx rows and JSON trees (20 000: about 240 MB
/// resident, 50 000: about 520 MB).
pub const DEFAULT_BATCH_SIZE: i64 = 20_000;

/// How long a replay waits for another one to finish before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// The read models `porter replay` can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadModel {
    Accounts,
}

impl ReadModel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub read_model: ReadModel,
    pub batch_size: i64,
    /// Build and compare, but do not swap; the shadow is dropped.
    pub dry_run: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            read_model: ReadModel::Accounts,
            batch_size: DEFAULT_BATCH_SIZE,
            dry_run: false,
        }
    }
}

/// Where a replay is; reported to [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Folding the log into the shadow, the projector still running.
    Building,
    /// The projector is paused; applying what committed meanwhile.
    CatchingUp,
    /// Comparing the shadow with the live table (dry run).
    Comparing,
    /// Renaming the shadow over the live table.
    Swapping,
}

/// Receives progress reports. The CLI draws a bar or prints lines; tests
/// use it as a hook to interrupt a replay mid-way.
pub trait Progress: Send {
    /// About `total` events are in the log.
    fn started(&mut self, _total: u64) {}
    fn phase(&mut self, _phase: Phase) {}
    /// `applied` events in all, so far.
    fn applied(&mut self, _applied: u64) {}
    fn finished(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {}

#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub read_model: ReadModel,
    /// Events folded into the shadow in all.
    pub events: u64,
    /// Of those, events applied while the projector was paused.
    pub caught_up: u64,
    /// Rows in the rebuilt table.
    pub rows: i64,
    /// The last event the rebuilt table holds; the checkpoint after a swap.
    pub cursor: Cursor,
    pub elapsed: Duration,
    /// How long the live projector was paused.
    pub paused: Duration,
    /// `Some` for a dry run: how the rebuilt table differs from the live one
    /// brought to the same cursor.
    pub diff: Option<Diff>,
    pub swapped: bool,
}

impl ReplayReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("another replay of {0} is running")]
    AlreadyRunning(&'static str),
    #[error("replay interrupted; the live table is untouched")]
    Interrupted,
    #[error(
        "the live checkpoint ({live:?}) is past the rebuilt table ({rebuilt:?}); nothing swapped"
    )]
    CheckpointAhead { live: Cursor, rebuilt: Cursor },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("replay: {0}")]
    Database(#[from] sqlx::Error),
}

/// Rebuilds the read model and, unless `dry_run`, swaps it in. Cancelling
/// `cancel` stops the build between batches (the shadow is dropped); dropping
/// the future stops it anywhere. Either way the live table is untouched.
#[tracing::instrument(skip_all, fields(read_model = options.read_model.name(), dry_run = options.dry_run))]
pub async fn replay(
    pool: &PgPool,
    options: &ReplayOptions,
    progress: &mut dyn Progress,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    let _lock = ReplayLock::acquire(pool, options.read_model).await?;
    create_shadow(pool).await?;
    let total = store::count_events(pool).await?;
    let target = store::last_committed(pool).await?;
    progress.started(total.max(0) as u64);
    progress.phase(Phase::Building);
    let result = async {
        let (cursor, built) = build(pool, batch_size, target, progress, cancel).await?;
        finish(pool, options, cursor, built, progress).await
    }
    .await;
    progress.finished();
    let finished = match result {
        Ok(finished) => finished,
        Err(error) => {
            drop_shadow(pool).await;
            return Err(error);
        }
    };
    if !finished.swapped {
        drop_shadow(pool).await;
    }
    Ok(ReplayReport {
        read_model: options.read_model,
        events: finished.events,
        caught_up: finished.caught_up,
        rows: finished.rows,
        cursor: finished.cursor,
        elapsed: started.elapsed(),
        paused: finished.paused,
        diff: finished.diff,
        swapped: finished.swapped,
    })
}

/// A session advisory lock on a connection of its own: one replay per read
/// model at a time. The connection is detached from the pool, so however the
/// replay ends (even a dropped future) the connection closes and Postgres
/// releases the lock.
struct ReplayLock {
    _connection: PgConnection,
}

impl ReplayLock {
    async fn acquire(pool: &PgPool, read_model: ReadModel) -> Result<Self, ReplayError> {
        let mut connection = pool.acquire().await?.detach();
        let key = format!("porter:replay:{}", read_model.name());
        // A replay interrupted a moment ago may still hold the lock until its
        // server process notices the closed connection; wait that long.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut connection)
                .await?;
            if locked {
                return Ok(Self {
                    _connection: connection,
                });
            }
            if Instant::now() >= deadline {
                let _ = connection.close().await;
                return Err(ReplayError::AlreadyRunning(read_model.name()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
