//! Account load: how long rebuilding an account takes when its stream is
//! long, against a fresh account.
//!
//! Every sign-in, email job and admin lookup loads the account it names. A
//! red-team run grew an active account's stream to ~600 events with
//! anonymous sign-ups; folding it took 4× a fresh account's load, and the
//! owner's sign-in became distinguishable from an unknown login's. Porter
//! now loads from a snapshot plus the events after it
//! (`porter::platform::commands::load_account`), so the two should take the same. The
//! phase also times the whole-stream fold that loads did before, for scale.
//!
//! The accounts are generated like the replay's (`porter_test_support::
//! generate`), and the long one gets [`HISTORY_PAIRS`] sign-up notices and
//! their withheld deliveries appended through Porter's own store.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use porter::{
    domain::{
        AccountEvent,
        account::apply,
        events::{EmailWithheld, SignUpAttemptedForExistingEmail},
    },
    platform::{
        commands::{self, load_account},
        store::{self, EventMetadata, NewEvent},
    },
};
use serde::Serialize;
use sqlx::{PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

use crate::stats::{Latency, mann_whitney_p};

/// Notice-and-withheld pairs appended to the long account: 600 events on
/// top of its four, the size the red team measured.
const HISTORY_PAIRS: usize = 300;
/// Timed loads of each kind, interleaved so drift hits all alike.
const ROUNDS: usize = 300;

#[derive(Debug, Clone, Serialize)]
pub struct AccountLoad {
    pub long_history_events: i64,
    pub fresh: Latency,
    /// The long account, loaded from its snapshot and the events after it.
    pub long: Latency,
    /// The long account folded from its first event, as loads were before
    /// snapshots.
    pub long_whole_stream: Latency,
    /// `long.p50 / fresh.p50`: 1 when history length no longer shows.
    pub ratio: f64,
    pub whole_stream_ratio: f64,
    /// Mann–Whitney p of fresh against long loads; small means an observer
    /// timing loads could tell them apart.
    pub p_value: f64,
}

impl AccountLoad {
    pub fn row(&self) -> String {
        format!(
            "{:.2}× fresh (p50 {:.2} vs {:.2} ms, p = {:.2}); whole stream {:.1}×",
            self.ratio, self.long.p50_ms, self.fresh.p50_ms, self.p_value, self.whole_stream_ratio
        )
    }
}

/// Generates a fresh and a long-history account into the migrated database
/// at `url` and times loading each.
pub async fn run(url: &str) -> anyhow::Result<AccountLoad> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .context("connect for the account load")?;
    let fresh = generated_account(&pool).await?;
    let long = generated_account(&pool).await?;
    let long_history_events = lengthen(&pool, long).await?;
    // The first load folds the whole stream and saves the snapshot.
    load_account(&pool, long)
        .await?
        .context("the long account")?;
    let mut samples = [vec![], vec![], vec![]];
    for _ in 0..ROUNDS {
        samples[0].push(timed(load_account(&pool, fresh)).await?);
        samples[1].push(timed(load_account(&pool, long)).await?);
        samples[2].push(timed(whole_stream(&pool, long)).await?);
    }
    pool.close().await;
    let [fresh, long, whole] = samples.each_ref().map(|s| Latency::of(s));
    let millis = |s: &[Duration]| {
        s.iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect::<Vec<_>>()
    };
    let ratio = |a: &Latency| a.p50_ms / fresh.p50_ms.max(f64::EPSILON);
    Ok(AccountLoad {
        long_history_events,
        ratio: ratio(&long),
        whole_stream_ratio: ratio(&whole),
        p_value: mann_whitney_p(&millis(&samples[0]), &millis(&samples[1])),
        fresh,
        long,
        long_whole_stream: whole,
    })
}

async fn timed<T, E>(load: impl Future<Output = Result<T, E>>) -> anyhow::Result<Duration>
where
    anyhow::Error: From<E>,
{
    let started = Instant::now();
    load.await?;
    Ok(started.elapsed())
}

/// One generated active account; returns its id.
async fn generated_account(pool: &PgPool) -> anyhow::Result<Uuid> {
    let before: Vec<String> = streams(pool).await?;
    porter_test_support::generate::events(pool, 1).await?;
    streams(pool)
        .await?
        .into_iter()
        .find(|stream| !before.contains(stream))
        .and_then(|stream| Uuid::parse_str(stream.trim_start_matches("account-")).ok())
        .context("the generated account's stream")
}

async fn streams(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT stream_id FROM events")
        .fetch_all(pool)
        .await?)
}

/// Appends [`HISTORY_PAIRS`] notices and their withheld deliveries to
/// `account_id`'s stream; returns its length.
async fn lengthen(pool: &PgPool, account_id: Uuid) -> anyhow::Result<i64> {
    let stream_id = store::account_stream(account_id);
    let mut version = i64::try_from(porter_test_support::generate::EVENTS_PER_ACCOUNT)?;
    for _ in 0..HISTORY_PAIRS {
        let request_id = Uuid::now_v7();
        let pair = [
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id,
                attempted_at: Some(chrono::Utc::now()),
            }),
            AccountEvent::EmailWithheld(EmailWithheld {
                request_id,
                reason: "EMAIL_PER_ADDRESS".into(),
            }),
        ];
        let encoded = pair
            .iter()
            .map(NewEvent::from_domain)
            .collect::<Result<Vec<_>, _>>()?;
        version = store::append(
            pool,
            &stream_id,
            version,
            &encoded,
            &[],
            &EventMetadata::default(),
        )
        .await?;
    }
    Ok(version)
}

/// The account folded from its first event, as every load was before
/// snapshots.
async fn whole_stream(pool: &PgPool, account_id: Uuid) -> anyhow::Result<()> {
    commands::decoded_stream(pool, account_id)
        .await?
        .iter()
        .fold(None, |state, (recorded, event)| {
            apply(state, event, recorded.version)
        })
        .context("the long account")?;
    Ok(())
}
