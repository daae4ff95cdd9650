//! Replay: how fast the `accounts` read model is rebuilt from a large log.
//!
//! The log is generated straight into a fresh database with SQL: complete
//! account lifecycles (`AccountRegistered`, `ActivationRequested`,
//! `ActivationEmailSent`, `AccountActivated`), four events per account, with
//! payloads in the shapes of `src/domain/events.rs` so Porter decodes them
//! as its own. Then the read model is rebuilt from the first event and timed.
//!
//! How it is rebuilt is [`Replayer`]: today Porter's projector
//! (`porter::projection::project_accounts`) called in a loop with a large
//! batch; once `porter replay` lands, the default of `--replay-with` in
//! `main.rs` switches to [`Replayer::PorterReplay`] (one line).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection, PgPool, postgres::PgPoolOptions};

use crate::{
    cpu::{CpuMeter, PhaseCpu},
    processes,
};

/// Events per generated account.
const EVENTS_PER_ACCOUNT: u64 = 4;
/// Accounts per generating statement; each statement is its own transaction,
/// so the log holds many transaction ids as a real one does.
const ACCOUNTS_PER_CHUNK: u64 = 25_000;
/// Events per projector round in a replay: large, as a rebuild would use.
pub const REPLAY_BATCH: i64 = 10_000;
/// `porter replay`'s command line, for [`Replayer::PorterReplay`] (as the
/// command is shaped on the `ops` branch today).
const PORTER_REPLAY_ARGS: &[&str] = &["replay", "--read-model", "accounts"];

/// What rebuilds the read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replayer {
    /// `porter::projection::project_accounts` in a loop, in this process.
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
    let accounts = events / EVENTS_PER_ACCOUNT;
    let started = Instant::now();
    generate(url, accounts).await?;
    let generate_seconds = started.elapsed().as_secs_f64();

    // Connected before the clock starts, and closed after the CPU is read,
    // so the measurement holds replay work only and sees its backends.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connect for replay")?;
    let phase = meter.start("replay");
    let started = Instant::now();
    let (batch_size, replayed) = match replayer {
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
    };
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
        let batch = porter::projection::project_accounts(pool, REPLAY_BATCH)
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
async fn generate(url: &str, accounts: u64) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    let mut first = 1;
    while first <= accounts {
        let last = (first + ACCOUNTS_PER_CHUNK - 1).min(accounts);
        sqlx::query(GENERATE_SQL)
            .bind(first as i64)
            .bind(last as i64)
            .execute(&mut connection)
            .await
            .context("generate events")?;
        first = last + 1;
    }
    tokio::time::timeout(
        Duration::from_secs(120),
        sqlx::query("VACUUM (ANALYZE) events").execute(&mut connection),
    )
    .await
    .context("vacuum timed out")?
    .context("vacuum the generated log")?;
    Ok(())
}

/// Accounts `$1..=$2`, four events each, in stream order. Ids are derived
/// from the account number so a run is reproducible; request events use
/// their request id as event id, as Porter does.
const GENERATE_SQL: &str = r"
INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, recorded_at)
SELECT
    CASE WHEN v.n = 2 THEN ids.request_id ELSE md5('event-' || a || '-' || v.n)::uuid END,
    'account-' || ids.account_id,
    v.n,
    v.event_type,
    1,
    CASE v.n
        WHEN 1 THEN jsonb_build_object(
            'account_id', ids.account_id,
            'username', 'User_' || a,
            'username_canonical', 'user_' || a,
            'email', 'User.' || a || '@Example.com',
            'email_canonical', 'user.' || a || '@example.com',
            'password_hash', '$argon2id$v=19$m=19456,t=2,p=1$'
                || left(rtrim(encode(sha256(('salt' || a)::bytea), 'base64'), '='), 22) || '$'
                || rtrim(encode(sha256(('hash' || a)::bytea), 'base64'), '='),
            'locale', 'en')
        WHEN 2 THEN jsonb_build_object('request_id', ids.request_id, 'reason', 'sign-up')
        WHEN 3 THEN jsonb_build_object(
            'request_id', ids.request_id,
            'key_fingerprint', left(md5('key-' || a), 16),
            'sent_at', t.at + interval '1 second',
            'expires_at', t.at + interval '901 seconds')
        ELSE jsonb_build_object(
            'request_id', ids.request_id,
            'activated_at', t.at + interval '120 seconds')
    END,
    CASE v.n
        WHEN 3 THEN jsonb_build_object('causation_id', ids.request_id)
        ELSE jsonb_build_object(
            'request_id', md5('http-' || a || '-' || v.n)::uuid::text,
            'client_ip_hash', left(md5('ip-' || (a % 5000)), 16))
    END,
    t.at + (v.n - 1) * interval '1 second'
FROM generate_series($1::bigint, $2::bigint) AS a
CROSS JOIN LATERAL (
    SELECT md5('account-' || a)::uuid AS account_id, md5('request-' || a)::uuid AS request_id
) AS ids
CROSS JOIN LATERAL (
    SELECT timestamptz '2026-01-01 00:00:00+00' + a * interval '1 second' AS at
) AS t
CROSS JOIN (VALUES
    (1, 'AccountRegistered'),
    (2, 'ActivationRequested'),
    (3, 'ActivationEmailSent'),
    (4, 'AccountActivated')
) AS v(n, event_type)
ORDER BY a, v.n
";
