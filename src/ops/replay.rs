//! `porter replay`: rebuild a read model from the first event and swap it in.
//!
//! The rebuild goes into a shadow table (`accounts_shadow`, created `LIKE
//! accounts INCLUDING ALL`) through the same batched
//! [`crate::projection::accounts::apply`] the live projector uses, reading the log
//! with [`crate::store::read_committed_after`] in `(tx_id, position)` order. The live
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

use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    projection::{
        ProjectionError,
        accounts::{self, Table},
    },
    store::{Cursor, RecordedEvent, TxId, read_committed_after, save_checkpoint},
};

/// Events read and applied per shadow transaction. Each batch costs three
/// statements whatever its size, and an account's events that fall in one
/// batch become one row write, so bigger batches are faster. Replaying 1M
/// synthetic events (the test-support generator) on a shared 2-core machine:
/// 10 000 gave 70 000–85 000 events/s, 20 000 gave 77 000–125 000, 50 000
/// gave 105 000–138 000. About three batches are in memory at once, roughly
/// 10 KiB per event with sqlx rows and JSON trees (20 000: about 240 MB
/// resident, 50 000: about 520 MB).
pub const DEFAULT_BATCH_SIZE: i64 = 20_000;

/// How long the swap waits for its locks (the checkpoint row, then the live
/// table for the rename) before giving up with the live table untouched. A
/// rename queued behind a long query would otherwise block every reader that
/// arrives after it.
const SWAP_LOCK_TIMEOUT: &str = "10s";

/// How often the build looks again when the log's readable end has not yet
/// reached the events committed before the replay started.
const HORIZON_POLL: Duration = Duration::from_millis(20);

/// How long a replay waits for another one to finish before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How many differing rows a dry run lists.
const DIFF_EXAMPLES: i64 = 10;

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

/// Rows that differ between the rebuilt and the live table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the rebuilt table only.
    pub added: i64,
    /// In the live table only.
    pub removed: i64,
    /// In both, with different contents.
    pub changed: i64,
    /// A few of them, by id.
    pub examples: Vec<(Uuid, Change)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.changed == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
        }
    }
}

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
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let target = last_committed(pool).await?;
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

/// The shadow starts unlogged: rows rewritten batch after batch while it is
/// built would otherwise each go to the WAL. A crash empties an unlogged
/// table, which costs nothing here since an interrupted replay starts over.
/// It becomes a logged table before it is swapped in ([`make_durable`]).
async fn create_shadow(pool: &PgPool) -> Result<(), sqlx::Error> {
    let shadow = Table::Shadow.name();
    let live = Table::Live.name();
    // Checked first rather than `DROP ... IF EXISTS`, whose notice would
    // show in the operator's terminal on every run.
    let leftover: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(shadow)
        .fetch_one(pool)
        .await?;
    if leftover {
        tracing::info!("dropping the shadow table an interrupted replay left");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {shadow}")))
            .execute(pool)
            .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE UNLOGGED TABLE {shadow} (LIKE {live} INCLUDING ALL)"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

/// Writes the built shadow to the WAL once, as a whole, so the table that is
/// swapped in is as durable (and replicated) as any other. It locks only the
/// shadow, so the live projector keeps running meanwhile.
async fn make_durable(pool: &PgPool) -> Result<(), sqlx::Error> {
    let statement = format!("ALTER TABLE {} SET LOGGED", Table::Shadow.name());
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await?;
    Ok(())
}

/// Best effort: a shadow left behind is dropped by the next replay anyway.
async fn drop_shadow(pool: &PgPool) {
    let statement = format!("DROP TABLE IF EXISTS {}", Table::Shadow.name());
    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "could not drop the shadow table");
    }
}

/// The last event in the global order among those committed now.
async fn last_committed(pool: &PgPool) -> Result<Cursor, sqlx::Error> {
    let last: Option<(String, i64)> = sqlx::query_as(
        "SELECT tx_id::text, position FROM events \
         ORDER BY events.tx_id DESC, events.position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(last.map_or(Cursor::default(), |(tx_id, position)| Cursor {
        tx_id: TxId(tx_id.parse().unwrap_or_default()),
        position,
    }))
}

type Batch = Result<Vec<RecordedEvent>, sqlx::Error>;

/// Folds the log into the shadow, at least up to `target`. One task reads the
/// next batch while this one applies the current, on two connections, so
/// Postgres reads and writes overlap. Returns the shadow's cursor and the
/// events applied.
async fn build(
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
        accounts::apply(&mut tx, Table::Shadow, &events).await?;
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

struct Finished {
    events: u64,
    caught_up: u64,
    rows: i64,
    cursor: Cursor,
    paused: Duration,
    diff: Option<Diff>,
    swapped: bool,
}

/// The swap (or, for a dry run, the comparison), in one transaction that
/// holds the checkpoint row and so pauses the live projector.
async fn finish(
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
    let (tx_id, position): (String, i64) =
        sqlx::query_as("SELECT tx_id::text, position FROM checkpoints WHERE name = $1 FOR UPDATE")
            .bind(accounts::CHECKPOINT)
            .fetch_one(&mut *tx)
            .await?;
    let paused = Instant::now();
    let live = Cursor {
        tx_id: TxId(tx_id.parse().unwrap_or_default()),
        position,
    };
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
    save_checkpoint(&mut tx, accounts::CHECKPOINT, cursor).await?;
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
/// (inclusive) or to the end. Returns the new cursor and the events applied.
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
    loop {
        let mut events = read_committed_after(&mut **tx, cursor, batch_size).await?;
        let full = events.len() as i64 == batch_size;
        if let Some(until) = until {
            events.retain(|event| event.cursor() <= until);
        }
        let Some(last) = events.last().map(RecordedEvent::cursor) else {
            break;
        };
        accounts::apply(tx, table, &events).await?;
        cursor = last;
        applied += events.len() as u64;
        on_batch(applied);
        if !full || until == Some(cursor) {
            break;
        }
    }
    Ok((cursor, applied))
}

/// Renames the shadow over the live table and drops the old one. Index and
/// constraint names follow the table (`accounts_shadow_pkey` becomes
/// `accounts_pkey`), so the next replay's shadow gets the same names again.
async fn swap_tables(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    let live = Table::Live.name();
    let shadow = Table::Shadow.name();
    let replaced = format!("{live}_replaced");
    for statement in [
        format!("ALTER TABLE {live} RENAME TO {replaced}"),
        format!("ALTER TABLE {shadow} RENAME TO {live}"),
        format!("DROP TABLE {replaced}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut **tx)
            .await?;
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = $1 AND starts_with(indexname, $2)",
    )
    .bind(live)
    .bind(shadow)
    .fetch_all(&mut **tx)
    .await?;
    for index in indexes {
        let renamed = format!("{live}{}", &index[shadow.len()..]);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER INDEX \"{index}\" RENAME TO \"{renamed}\""
        )))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Counts and samples the rows that differ, comparing whole rows (the shadow
/// has the live table's columns in the same order).
async fn compare(tx: &mut Transaction<'_, Postgres>) -> Result<Diff, sqlx::Error> {
    let live = Table::Live.name();
    let shadow = Table::Shadow.name();
    let joined = format!(
        "FROM {live} l FULL JOIN {shadow} s ON s.id = l.id \
         WHERE l.id IS NULL OR s.id IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(s.*)"
    );
    let (added, removed, changed): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FILTER (WHERE l.id IS NULL), count(*) FILTER (WHERE s.id IS NULL), \
                count(*) FILTER (WHERE l.id IS NOT NULL AND s.id IS NOT NULL) {joined}"
    )))
    .fetch_one(&mut **tx)
    .await?;
    let examples: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(s.id, l.id), \
                CASE WHEN l.id IS NULL THEN 'added' WHEN s.id IS NULL THEN 'removed' ELSE 'changed' END \
         {joined} ORDER BY 1 LIMIT {DIFF_EXAMPLES}"
    )))
    .fetch_all(&mut **tx)
    .await?;
    Ok(Diff {
        added,
        removed,
        changed,
        examples: examples
            .into_iter()
            .map(|(id, change)| {
                let change = match change.as_str() {
                    "added" => Change::Added,
                    "removed" => Change::Removed,
                    _ => Change::Changed,
                };
                (id, change)
            })
            .collect(),
    })
}

/// Progress for a terminal: a bar with events/s and ETA.
#[derive(Debug)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        Self { bar }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for ProgressBar {
    fn started(&mut self, total: u64) {
        self.bar.set_length(total.max(1));
        let style = indicatif::ProgressStyle::with_template(
            "{msg:12} [{bar:36}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        self.bar.set_style(style);
    }

    fn phase(&mut self, phase: Phase) {
        self.bar.set_message(phase_name(phase));
    }

    fn applied(&mut self, applied: u64) {
        if applied > self.bar.length().unwrap_or(0) {
            self.bar.set_length(applied);
        }
        self.bar.set_position(applied);
    }

    fn finished(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Progress for logs and pipes: one plain line every few seconds.
#[derive(Debug)]
pub struct ProgressLines<W: std::io::Write + Send> {
    out: W,
    total: u64,
    started: Instant,
    last_line: Instant,
    every: Duration,
    phase: Phase,
}

impl<W: std::io::Write + Send> ProgressLines<W> {
    pub fn new(out: W, every: Duration) -> Self {
        Self {
            out,
            total: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            every,
            phase: Phase::Building,
        }
    }
}

impl<W: std::io::Write + Send> Progress for ProgressLines<W> {
    fn started(&mut self, total: u64) {
        self.total = total;
        self.started = Instant::now();
        self.last_line = Instant::now();
        let _ = writeln!(self.out, "replay: about {total} events to fold");
    }

    fn phase(&mut self, phase: Phase) {
        if phase != self.phase {
            self.phase = phase;
            let _ = writeln!(self.out, "replay: {}", phase_name(phase));
        }
    }

    fn applied(&mut self, applied: u64) {
        if self.last_line.elapsed() < self.every {
            return;
        }
        self.last_line = Instant::now();
        let _ = writeln!(
            self.out,
            "replay: {}",
            progress_line(applied, self.total, self.started.elapsed())
        );
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Building => "building",
        Phase::CatchingUp => "catching up",
        Phase::Comparing => "comparing",
        Phase::Swapping => "swapping",
    }
}

/// `350000/1000000 events (35%), 112000 events/s, ETA 6 s`.
pub fn progress_line(applied: u64, total: u64, elapsed: Duration) -> String {
    let rate = applied as f64 / elapsed.as_secs_f64().max(1e-9);
    let total = total.max(applied);
    let percent = (applied * 100).checked_div(total).unwrap_or(100);
    let eta = if rate > 0.0 {
        format!("{:.0} s", (total - applied) as f64 / rate)
    } else {
        "?".into()
    };
    format!("{applied}/{total} events ({percent}%), {rate:.0} events/s, ETA {eta}")
}

/// The summary printed when a replay ends.
pub fn render_report(report: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = report.read_model.name();
    let _ = writeln!(
        out,
        "replayed {} events into {name} in {:.2} s ({:.0} events/s)",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second()
    );
    let _ = writeln!(
        out,
        "rebuilt table: {} rows, up to position {} (tx {})",
        report.rows, report.cursor.position, report.cursor.tx_id.0
    );
    let _ = writeln!(
        out,
        "projector paused for {:.0} ms ({} events applied meanwhile)",
        report.paused.as_secs_f64() * 1000.0,
        report.caught_up
    );
    match (&report.diff, report.swapped) {
        (_, true) => {
            let _ = writeln!(
                out,
                "swapped in: {name} is the rebuilt table; checkpoint moved"
            );
        }
        (Some(diff), false) => {
            let _ = writeln!(
                out,
                "dry run: {} added, {} removed, {} changed vs live; nothing swapped, shadow dropped",
                diff.added, diff.removed, diff.changed
            );
            for (id, change) in &diff.examples {
                let _ = writeln!(out, "  {:8} {id}", change.as_str());
            }
        }
        (None, false) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_rate_and_eta() {
        assert_eq!(
            progress_line(350_000, 1_000_000, Duration::from_secs(2)),
            "350000/1000000 events (35%), 175000 events/s, ETA 4 s"
        );
        assert_eq!(
            progress_line(0, 0, Duration::from_secs(1)),
            "0/0 events (100%), 0 events/s, ETA ?"
        );
    }
}
