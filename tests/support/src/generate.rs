//! A synthetic history, written straight into the event log, for replay
//! benchmarks and tests on a scratch database.
//!
//! Each account gets the four events of the happy path: `AccountRegistered`,
//! `ActivationRequested` (sign-up), `EmailSent` (with the
//! fingerprint of a freshly drawn key and its expiry) and `AccountActivated`,
//! plus its two unique claims. The events are `porter::domain` values stored
//! through `AccountEvent::encode`, so payloads and schema versions are always
//! the ones Porter writes today: a new schema version reaches the generated
//! log without a change here.
//!
//! Accounts are written in chunks, one transaction each, and within a chunk
//! the events are ordered by kind (all registrations, then all requests, ...),
//! so streams interleave in the global order as they do in production and a
//! replay batch keeps finding rows from earlier batches. A chunk is two
//! statements whose rows come from `UNNEST`ed arrays, so a million events
//! cost a few hundred round trips, not a million.
//!
//! It bypasses the aggregate, pushes no job and touches no Redis: never point
//! it at a deployment whose accounts are real.

use std::ops::RangeInclusive;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use porter::{
    domain::{
        AccountEvent, LinkKey, PasswordHash,
        events::{
            AccountActivated, AccountRegistered, ActivationReason, ActivationRequested, EmailSent,
            IssuedKey,
        },
    },
    platform::store::{EventMetadata, NewEvent, account_stream},
};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Accounts per transaction.
const CHUNK: u64 = 10_000;

/// Events per account: the happy path's four.
pub const EVENTS_PER_ACCOUNT: u64 = 4;

/// A PHC string of the production shape; nothing can log in with it.
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3ludGhldGljc2FsdA$c3ludGhldGljaGFzaHN5bnRoZXRpY2hhc2g";

/// Appends `accounts` synthetic accounts (four events each) to the log at
/// `pool`. Usernames and emails are `gen_<run>_<n>` and
/// `gen.<run>.<n>@example.com`, `<run>` random per call, so calls can be
/// repeated on one database. Returns the number of events written.
#[tracing::instrument(skip_all, fields(accounts = accounts))]
pub async fn events(pool: &PgPool, accounts: u64) -> anyhow::Result<u64> {
    let run = &Uuid::new_v4().simple().to_string()[..8];
    let origin = Utc::now() - TimeDelta::days(30);
    let mut first = 1u64;
    while first <= accounts {
        let last = (first + CHUNK - 1).min(accounts);
        Chunk::build(run, origin, first..=last)?
            .insert(pool)
            .await
            .with_context(|| format!("insert generated accounts {first} to {last}"))?;
        first = last + 1;
    }
    Ok(accounts * EVENTS_PER_ACCOUNT)
}

/// One synthetic account and its happy path.
struct Account {
    n: u64,
    id: Uuid,
    request_id: Uuid,
    username: String,
    email: String,
    /// When it signed up; the later events follow at the delays a quick
    /// user would take.
    at: DateTime<Utc>,
}

impl Account {
    fn new(run: &str, origin: DateTime<Utc>, n: u64) -> Self {
        Self {
            n,
            id: Uuid::new_v4(),
            request_id: Uuid::new_v4(),
            username: format!("gen_{run}_{n}"),
            email: format!("gen.{run}.{n}@example.com"),
            at: origin + TimeDelta::milliseconds(n as i64 * 100),
        }
    }

    /// The four events in stream order, each with the metadata its writer
    /// would store and the time it was recorded.
    fn history(&self) -> [(AccountEvent, EventMetadata, DateTime<Utc>); 4] {
        let sent_at = self.at + TimeDelta::seconds(2);
        let activated_at = self.at + TimeDelta::seconds(60);
        // Sign-up's two events come from one HTTP request, the activation
        // from another; the email from the job the request caused.
        let web = || EventMetadata {
            http_request_id: Some(Uuid::new_v4().to_string()),
            causation_id: None,
            client_ip_hash: Some(format!("{:016x}", self.n)),
            actor: None,
        };
        let sign_up = web();
        [
            (
                AccountEvent::AccountRegistered(AccountRegistered {
                    account_id: self.id,
                    username: self.username.clone(),
                    username_canonical: self.username.clone(),
                    email: self.email.clone(),
                    email_canonical: self.email.clone(),
                    password_hash: PasswordHash(PASSWORD_HASH.to_owned()),
                    locale: "en".to_owned(),
                    registered_at: Some(self.at),
                    supersedes: None,
                    address_owner: None,
                }),
                sign_up.clone(),
                self.at,
            ),
            (
                AccountEvent::ActivationRequested(ActivationRequested {
                    request_id: self.request_id,
                    reason: ActivationReason::SignUp,
                }),
                sign_up,
                self.at,
            ),
            (
                AccountEvent::EmailSent(EmailSent {
                    request_id: self.request_id,
                    sent_at,
                    key: Some(IssuedKey {
                        fingerprint: LinkKey::generate().fingerprint(),
                        expires_at: sent_at + TimeDelta::minutes(15),
                    }),
                }),
                EventMetadata {
                    causation_id: Some(self.request_id),
                    ..EventMetadata::default()
                },
                sent_at,
            ),
            (
                AccountEvent::AccountActivated(AccountActivated {
                    request_id: self.request_id,
                    activated_at,
                }),
                web(),
                activated_at,
            ),
        ]
    }
}

/// One transaction's rows, column by column, as `UNNEST` takes them.
#[derive(Default)]
struct Chunk {
    event_id: Vec<Uuid>,
    stream_id: Vec<String>,
    version: Vec<i64>,
    event_type: Vec<&'static str>,
    schema_version: Vec<i32>,
    payload: Vec<Value>,
    metadata: Vec<Value>,
    recorded_at: Vec<DateTime<Utc>>,
    claim_kind: Vec<&'static str>,
    claim_value: Vec<String>,
    claim_account: Vec<Uuid>,
    claimed_at: Vec<DateTime<Utc>>,
}

impl Chunk {
    /// The rows of accounts `numbers`, events ordered by kind, then account.
    fn build(
        run: &str,
        origin: DateTime<Utc>,
        numbers: RangeInclusive<u64>,
    ) -> anyhow::Result<Self> {
        let accounts: Vec<(Account, _)> = numbers
            .map(|n| {
                let account = Account::new(run, origin, n);
                let history = account.history();
                (account, history)
            })
            .collect();
        let mut chunk = Self::default();
        for (account, _) in &accounts {
            for (kind, value) in [("username", &account.username), ("email", &account.email)] {
                chunk.claim_kind.push(kind);
                chunk.claim_value.push(value.clone());
                chunk.claim_account.push(account.id);
                chunk.claimed_at.push(account.at);
            }
        }
        for version in 0..EVENTS_PER_ACCOUNT as usize {
            for (account, history) in &accounts {
                let (event, metadata, recorded_at) = &history[version];
                let new = NewEvent::from_domain(event).context("encode a generated event")?;
                chunk.event_id.push(new.event_id);
                chunk.stream_id.push(account_stream(account.id));
                chunk.version.push(version as i64 + 1);
                chunk.event_type.push(new.encoded.event_type);
                chunk.schema_version.push(new.encoded.schema_version);
                chunk.payload.push(new.encoded.payload);
                chunk
                    .metadata
                    .push(serde_json::to_value(metadata).context("encode event metadata")?);
                chunk.recorded_at.push(*recorded_at);
            }
        }
        Ok(chunk)
    }

    async fn insert(self, pool: &PgPool) -> anyhow::Result<()> {
        let mut tx = pool.begin().await.context("begin")?;
        sqlx::query(
            "INSERT INTO unique_claims (kind, value, account_id, claimed_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::timestamptz[])",
        )
        .bind(self.claim_kind)
        .bind(self.claim_value)
        .bind(self.claim_account)
        .bind(self.claimed_at)
        .execute(&mut *tx)
        .await
        .context("insert unique claims")?;
        // WITH ORDINALITY keeps the arrays' order, which is the interleaving
        // described above, in the positions the rows get.
        sqlx::query(
            "INSERT INTO events (event_id, stream_id, version, event_type, schema_version, payload, metadata, recorded_at) \
             SELECT event_id, stream_id, version, event_type, schema_version, payload, metadata, recorded_at \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[], $8::timestamptz[]) \
                  WITH ORDINALITY AS e(event_id, stream_id, version, event_type, schema_version, payload, metadata, recorded_at, n) \
             ORDER BY n",
        )
        .bind(self.event_id)
        .bind(self.stream_id)
        .bind(self.version)
        .bind(self.event_type)
        .bind(self.schema_version)
        .bind(self.payload)
        .bind(self.metadata)
        .bind(self.recorded_at)
        .execute(&mut *tx)
        .await
        .context("insert events")?;
        tx.commit().await.context("commit")
    }
}
