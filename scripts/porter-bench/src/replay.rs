//! Replay: how fast the `accounts` read model is rebuilt from a large log.
//!
//! The log is generated into a fresh database by the generator the tests
//! replay (`porter_test_support::generate`): complete account lifecycles,
//! four events per account, encoded by Porter's own domain types, with their
//! unique claims. Then the read model is rebuilt from the first event and
//! timed.
//!
//! How it is rebuilt is [`Replayer`]: the `porter replay` command (the
//! default), or Porter's projector (`porter::features::accounts::project_accounts`)
//! called in a loop with a large batch, for comparison.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use porter_test_support::generate::{self, EVENTS_PER_ACCOUNT};
use serde::Serialize;
use sqlx::{Connection as _, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::{
    cpu::{CpuMeter, PhaseCpu},
    processes,
};

/// Events per projector round in a replay: large, as a rebuild would use.
pub const REPLAY_BATCH: i64 = 10_000;
/// `porter replay`'s command line, for [`Replayer::PorterReplay`] (as the
/// command is shaped on the `ops` branch today).
const PORTER_REPLAY_ARGS: &[&str] = &["replay", "--read-model", "accounts"];

/// What rebuilds the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replayer {
    /// `porter::features::accounts::project_accounts` in a loop, in this process.
    Projector,
    /// The `porter replay` command, as a child process.
    PorterReplay,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayResult {
    pub replayer: Replayer,
    pub batch_size: Option<i64>,
    pub events: u64,
    pub accounts: u64,
    pub generate_seconds: f64,
    pub replay_seconds: f64,
    pub events_per_second: f64,
    /// Rows in `accounts` afterwards, and how many of them are active: both
    /// must equal `accounts`.
    pub rows: i64,
    pub active_rows: i64,
    pub verified: bool,
}

/// Generates `events` events into the migrated database at `url`, then
/// rebuilds `accounts` with `replayer` and checks the result.
pub async fn run(
    url: &str,
    events: u64,
    replayer: Replayer,
    porter: &Path,
    log_dir: &Path,
    meter: &CpuMeter,
) -> anyhow::Result<(ReplayResult, PhaseCpu)> {
    // Connected before the clock starts, and closed after the CPU is read,
    // so the measurement holds replay work only and sees its backends.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connect for replay")?;
    let accounts = events / EVENTS_PER_ACCOUNT;
    let started = Instant::now();
    generate(&pool, accounts).await?;
    let generate_seconds = started.elapsed().as_secs_f64();

    let mut phase = meter.start("replay");
    let started = Instant::now();
    // Sampled while it runs: `porter replay`'s backends exit with it.
    let (batch_size, replayed) = phase
        .sample_while(async {
            anyhow::Ok(match replayer {
                Replayer::Projector => (Some(REPLAY_BATCH), replay_with_projector(&pool).await?),
                Replayer::PorterReplay => {
                    processes::run_to_completion(
                        porter,
                        PORTER_REPLAY_ARGS,
                        &[("DATABASE_URL", url)],
                        &log_dir.join("replay.log"),
                    )
                    .await?;
                    (None, accounts * EVENTS_PER_ACCOUNT)
                }
            })
        })
        .await?;
    let replay_seconds = started.elapsed().as_secs_f64();
    let cpu = phase.end(replayed as usize);
    pool.close().await;

    let mut connection = PgConnection::connect(url).await?;
    let (rows, active_rows): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'active' AND emails_sent = 1) FROM accounts",
    )
    .fetch_one(&mut connection)
    .await
    .context("check the rebuilt read model")?;
    let result = ReplayResult {
        replayer,
        batch_size,
        events: replayed,
        accounts,
        generate_seconds,
        replay_seconds,
        events_per_second: replayed as f64 / replay_seconds.max(f64::EPSILON),
        rows,
        active_rows,
        verified: rows == accounts as i64 && active_rows == accounts as i64,
    };
    Ok((result, cpu))
}

/// Projects batches until the projector reports it has caught up.
async fn replay_with_projector(pool: &PgPool) -> anyhow::Result<u64> {
    let mut applied = 0u64;
    loop {
        let batch = porter::features::accounts::project_accounts(pool, REPLAY_BATCH)
            .await
            .context("project a batch")?;
        if batch == 0 {
            break;
        }
        applied += batch as u64;
    }
    Ok(applied)
}

/// Writes `accounts` complete lifecycles, then vacuums and analyzes the log
/// as autovacuum would have long since done on an established one.
async fn generate(pool: &PgPool, accounts: u64) -> anyhow::Result<()> {
    generate::events(pool, accounts)
        .await
        .context("generate events")?;
    tokio::time::timeout(
        Duration::from_secs(120),
        sqlx::query("VACUUM (ANALYZE) events").execute(pool),
    )
    .await
    .context("vacuum timed out")?
    .context("vacuum the generated log")?;
    Ok(())
}
