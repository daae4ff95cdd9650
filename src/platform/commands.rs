//! Running commands against account streams: load, decide, append, and on a
//! lost race load and decide again; then push the job of any email request
//! the command recorded.
//!
//! This is the one place web handlers, workers and operator tools change an
//! account, so the optimistic-concurrency loop and "append, then push the
//! job" are written once. The push comes strictly after the commit and its
//! failure is only logged: the request is durable in the log, and the outbox
//! relay pushes any request whose job never reached Redis.
//!
//! A command that writes several streams at once (a sign-up:
//! `features::sign_up`) uses the same pieces: [`claimant`] under a lock,
//! [`encode_all`], a retry paced by [`pause_before_round`], and
//! [`Commands::committed`] after the commit.
//!
//! Loading starts from the account's snapshot (`domain::snapshot`), so its
//! cost does not grow with the stream.

use std::time::Duration;

use chrono::{DateTime, Utc};
use porter_jobs::SendAccountEmail;
use rand::RngExt as _;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    domain::{
        Account, AccountCommand, AccountEvent, DecodeError, DomainError, EncodeError,
        account::apply,
        decide,
        snapshot::{SNAPSHOT_SCHEMA, snapshot_due},
    },
    platform::{
        queue::EmailQueue,
        store::{
            self, Append, AppendError, ClaimKind, EventMetadata, NewEvent, RecordedEvent,
            StoredSnapshot, account_stream,
        },
    },
};

/// How many times a command is re-decided after losing a race before giving
/// up. Contention on one account is rare (a double click, a duplicate job),
/// but a burst of sign-ups with one address can put dozens of writers on one
/// stream; with the jittered pause below they settle well within this.
pub const MAX_ATTEMPTS: u32 = 16;
/// The longest pause between two rounds.
const MAX_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{} is already claimed", .0.as_str())]
    ClaimTaken(ClaimKind),
    #[error("event {position} in stream {stream_id} cannot be read: {source}")]
    Undecodable {
        stream_id: String,
        position: i64,
        source: DecodeError,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("gave up after {MAX_ATTEMPTS} concurrent updates of {0}")]
    Contended(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The result of a command: the events it appended (none when it was a no-op)
/// and the account as it stands after them.
#[derive(Debug)]
pub struct Executed {
    pub events: Vec<AccountEvent>,
    pub account: Account,
}

/// The command side of Porter: the log to append to and the queue that
/// carries out the email requests it records.
#[derive(Debug, Clone)]
pub struct Commands {
    pool: PgPool,
    email_queue: EmailQueue,
    /// At least this long between two emails to one address; a job is
    /// scheduled no earlier.
    email_min_interval: Duration,
}

impl Commands {
    pub fn new(pool: PgPool, email_queue: EmailQueue, email_min_interval: Duration) -> Self {
        Self {
            pool,
            email_queue,
            email_min_interval,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The queue these commands push onto, for a job that needs no command
    /// (an operator's retry of an address request).
    pub fn email_queue(&self) -> &EmailQueue {
        &self.email_queue
    }

    /// Rebuilds one account; see [`load_account`].
    pub async fn load(&self, account_id: Uuid) -> Result<Option<Account>, CommandError> {
        load_account(&self.pool, account_id).await
    }

    /// Runs `command` against an existing account, re-deciding on a lost race.
    pub async fn execute(
        &self,
        account_id: Uuid,
        command: AccountCommand,
        metadata: &EventMetadata,
    ) -> Result<Executed, CommandError> {
        self.execute_from(account_id, None, command, metadata).await
    }

    /// Like [`Self::execute`], starting from `known`, a state the caller has
    /// just loaded; the stream is read again only if another writer got there
    /// first.
    pub async fn execute_on(
        &self,
        known: Account,
        command: AccountCommand,
        metadata: &EventMetadata,
    ) -> Result<Executed, CommandError> {
        self.execute_from(known.id, Some(known), command, metadata)
            .await
    }

    async fn execute_from(
        &self,
        account_id: Uuid,
        mut known: Option<Account>,
        command: AccountCommand,
        metadata: &EventMetadata,
    ) -> Result<Executed, CommandError> {
        let stream_id = account_stream(account_id);
        for attempt in 0..MAX_ATTEMPTS {
            pause_before_round(attempt).await;
            let current = match known.take() {
                Some(account) => Some(account),
                None => self.load(account_id).await?,
            };
            let Some(account) = current else {
                return Err(DomainError::NoSuchAccount.into());
            };
            let events = decide(Some(&account), command.clone())?;
            if events.is_empty() {
                if command.asks_for_email() {
                    // Merged into the request still outstanding; its job may
                    // have been lost, so push it again (same job id: a job
                    // still in Redis is left as it is).
                    self.push_outstanding(&account).await;
                }
                return Ok(Executed { events, account });
            }
            let encoded = encode_all(&events)?;
            let expected_version = account.version;
            let appended = if events.iter().any(AccountEvent::ends_registration) {
                let append = Append {
                    account_id,
                    expected_version,
                    events: encoded,
                    releases_claims: true,
                };
                store::append_all(&self.pool, &[append], &[], metadata).await
            } else {
                store::append(
                    &self.pool,
                    &stream_id,
                    expected_version,
                    &encoded,
                    &[],
                    metadata,
                )
                .await
                .map(|_| ())
            };
            match appended {
                Ok(()) => {
                    return self
                        .committed(Some(account), events, expected_version)
                        .await;
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(AppendError::ClaimTaken(kind)) => return Err(CommandError::ClaimTaken(kind)),
                Err(AppendError::Database(e)) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(stream_id))
    }

    /// After a commit: count the facts, fold them into the state, and push
    /// the job of an email request among them.
    pub async fn committed(
        &self,
        state: Option<Account>,
        events: Vec<AccountEvent>,
        from_version: i64,
    ) -> Result<Executed, CommandError> {
        crate::platform::metrics::record_events(&events);
        let account = events
            .iter()
            .zip(from_version + 1..)
            .fold(state, |state, (event, version)| {
                apply(state, event, version)
            })
            .ok_or(DomainError::NoSuchAccount)?;
        if let Some(request_id) = events.iter().find_map(AccountEvent::request_id) {
            self.push_email(&account, request_id).await;
        }
        Ok(Executed { events, account })
    }

    /// Pushes the job of the email request `account` is still waiting for,
    /// if any.
    pub async fn push_outstanding(&self, account: &Account) {
        if let Some(request_id) = account.outstanding_request() {
            self.push_email(account, request_id).await;
        }
    }

    /// Pushes the job of `request_id`, no earlier than the minimum interval
    /// between emails to the account's address allows. A failure is logged,
    /// not reported: the request is in the log and the relay pushes it.
    pub async fn push_email(&self, account: &Account, request_id: Uuid) {
        let min_interval = chrono::Duration::from_std(self.email_min_interval).unwrap_or_default();
        let not_before: Option<DateTime<Utc>> = account.next_email_allowed_at(min_interval);
        let job = SendAccountEmail::new(account.id, request_id);
        if let Err(error) = self.email_queue.push(job, not_before).await {
            tracing::warn!(email_request_id = %request_id, %error, "email job not enqueued; the relay will push it");
        }
    }
}

/// Rebuilds one account from its latest snapshot and the events after it;
/// `None` when it does not exist. A load that folded
/// [`SNAPSHOT_EVERY`](crate::domain::snapshot::SNAPSHOT_EVERY) events or
/// more saves what it built, so the next one folds fewer; a failed save is
/// only logged (a snapshot is a cache).
pub async fn load_account(
    pool: &PgPool,
    account_id: Uuid,
) -> Result<Option<Account>, CommandError> {
    let mut connection = pool.acquire().await?;
    let loaded = load_in(&mut connection, account_id).await?;
    if let Some(account) = &loaded.account
        && snapshot_due(loaded.events_read)
    {
        save_snapshot(&mut connection, account).await;
    }
    Ok(loaded.account)
}

/// An account as a load rebuilt it.
struct Loaded {
    account: Option<Account>,
    /// The events folded onto the snapshot (all of the stream's without one).
    events_read: usize,
}

/// Rebuilds one account from its snapshot (if one of the current schema is
/// stored) and the events after it, read through `connection` (the pool's,
/// or a transaction that holds an address lock).
async fn load_in(connection: &mut PgConnection, account_id: Uuid) -> Result<Loaded, CommandError> {
    let stream_id = account_stream(account_id);
    let snapshot = store::load_snapshot(&mut *connection, &stream_id, SNAPSHOT_SCHEMA).await?;
    let start = snapshot.and_then(|snapshot| match Account::from_snapshot(snapshot.state) {
        Ok(account) => Some(account),
        Err(error) => {
            tracing::warn!(%account_id, %error, "account snapshot unreadable; reading the whole stream");
            None
        }
    });
    let after_version = start.as_ref().map_or(0, |account| account.version);
    let events = decode_all(
        &stream_id,
        store::load_stream(&mut *connection, &stream_id, after_version).await?,
    )?;
    Ok(Loaded {
        events_read: events.len(),
        account: events.iter().fold(start, |state, (recorded, event)| {
            apply(state, event, recorded.version)
        }),
    })
}

/// Saves `account` as its stream's snapshot. A failure is only logged: the
/// next load reads the events instead.
async fn save_snapshot(connection: &mut PgConnection, account: &Account) {
    let saved = match account.to_snapshot() {
        Ok(state) => {
            let snapshot = StoredSnapshot {
                version: account.version,
                state,
            };
            let stream_id = account_stream(account.id);
            store::save_snapshot(connection, &stream_id, SNAPSHOT_SCHEMA, &snapshot)
                .await
                .map_err(anyhow::Error::from)
        }
        Err(error) => Err(error.into()),
    };
    if let Err(error) = saved {
        tracing::warn!(account_id = %account.id, error = %format!("{error:#}"), "account snapshot not saved");
    }
}

/// The account holding a claim, as it stands now.
pub async fn claimant(
    connection: &mut PgConnection,
    kind: ClaimKind,
    value: &str,
) -> Result<Option<Account>, CommandError> {
    let Some(account_id) = store::claim_holder(&mut *connection, kind, value).await? else {
        return Ok(None);
    };
    let loaded = load_in(connection, account_id).await?;
    Ok(Some(loaded.account.ok_or(DomainError::NoSuchAccount)?))
}

/// Every event of one account's stream, as recorded and decoded (upcast to
/// its current shape); an event that does not decode is an error, never a
/// skip.
pub async fn decoded_stream<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    account_id: Uuid,
) -> Result<Vec<(RecordedEvent, AccountEvent)>, CommandError> {
    let stream_id = account_stream(account_id);
    decode_all(
        &stream_id,
        store::load_stream(executor, &stream_id, 0).await?,
    )
}

/// Decodes recorded events of `stream_id`; one that does not decode is an
/// error, never a skip.
fn decode_all(
    stream_id: &str,
    recorded: Vec<RecordedEvent>,
) -> Result<Vec<(RecordedEvent, AccountEvent)>, CommandError> {
    recorded
        .into_iter()
        .map(|recorded| {
            let event = recorded
                .decode()
                .map_err(|source| CommandError::Undecodable {
                    stream_id: stream_id.to_owned(),
                    position: recorded.position,
                    source,
                })?;
            Ok((recorded, event))
        })
        .collect()
}

/// Losers of a race retry at random moments, so they do not all collide
/// again on the next version. The first round does not wait.
pub async fn pause_before_round(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let ceiling = Duration::from_millis(1 << attempt.min(6)).min(MAX_PAUSE);
    let pause = ceiling.mul_f64(rand::rng().random::<f64>());
    tokio::time::sleep(pause).await;
}

/// The events as the store writes them.
pub fn encode_all(events: &[AccountEvent]) -> Result<Vec<NewEvent>, EncodeError> {
    events.iter().map(NewEvent::from_domain).collect()
}
