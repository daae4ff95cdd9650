//! Running commands against account streams: load, decide, append, and on a
//! lost race load and decide again; then push the job of any email request
//! the command recorded.
//!
//! This is the one place web handlers, workers and operator tools change an
//! account, so the optimistic-concurrency loop and "append, then push the
//! job" are written once. The push comes strictly after the commit and its
//! failure is only logged: the request is durable in the log, and the outbox
//! relay pushes any request whose job never reached Redis.

use std::time::Duration;

use chrono::{DateTime, Utc};
use porter_jobs::SendAccountEmail;
use rand::RngExt as _;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{
        Account, AccountCommand, AccountEvent, DecodeError, DomainError, EncodeError, Registration,
        account::apply, decide,
    },
    queue::EmailQueue,
    store::{self, AppendError, Claim, ClaimKind, EventMetadata, NewEvent, account_stream},
};

/// How many times a command is re-decided after losing a race before giving
/// up. Contention on one account is rare (a double click, a duplicate job),
/// but a burst of sign-ups with one address can put dozens of writers on one
/// stream; with the jittered pause below they settle well within this.
const MAX_ATTEMPTS: u32 = 16;
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

    /// Rebuilds one account from its stream; `None` when it does not exist.
    pub async fn load(&self, account_id: Uuid) -> Result<Option<Account>, CommandError> {
        let stream_id = account_stream(account_id);
        let mut state = None;
        for recorded in store::load_stream(&self.pool, &stream_id).await? {
            let event = recorded
                .decode()
                .map_err(|source| CommandError::Undecodable {
                    stream_id: stream_id.clone(),
                    position: recorded.position,
                    source,
                })?;
            state = apply(state, &event, recorded.version);
        }
        Ok(state)
    }

    /// Registers a new account, claiming its username and email in the same
    /// transaction, and pushes its activation email. A taken claim is
    /// reported, never overwritten.
    pub async fn register(
        &self,
        registration: Registration,
        metadata: &EventMetadata,
    ) -> Result<Executed, CommandError> {
        let account_id = registration.account_id;
        let claims = [
            (
                Claim {
                    kind: ClaimKind::Username,
                    value: registration.username.canonical().to_owned(),
                },
                account_id,
            ),
            (
                Claim {
                    kind: ClaimKind::Email,
                    value: registration.email.canonical().to_owned(),
                },
                account_id,
            ),
        ];
        let events = decide(None, AccountCommand::Register(registration))?;
        let encoded = encode_all(&events)?;
        let stream_id = account_stream(account_id);
        match store::append(&self.pool, &stream_id, 0, &encoded, &claims, metadata).await {
            Ok(_) => self.committed(None, events, 0).await,
            Err(AppendError::ClaimTaken(kind)) => Err(CommandError::ClaimTaken(kind)),
            // A fresh random id already in use would be a broken RNG, not a race.
            Err(AppendError::Conflict { stream_id, .. }) => Err(CommandError::Contended(stream_id)),
            Err(AppendError::Database(e)) => Err(e.into()),
        }
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
            if attempt > 0 {
                // Losers of a race retry at random moments, so they do not all
                // collide again on the next version.
                let ceiling = Duration::from_millis(1 << attempt.min(6)).min(MAX_PAUSE);
                let pause = ceiling.mul_f64(rand::rng().random::<f64>());
                tokio::time::sleep(pause).await;
            }
            let current = match known.take() {
                Some(account) => Some(account),
                None => self.load(account_id).await?,
            };
            let Some(account) = current else {
                return Err(DomainError::NoSuchAccount.into());
            };
            let events = decide(Some(&account), command.clone())?;
            if events.is_empty() {
                return Ok(Executed { events, account });
            }
            let encoded = encode_all(&events)?;
            let expected_version = account.version;
            match store::append(
                &self.pool,
                &stream_id,
                expected_version,
                &encoded,
                &[],
                metadata,
            )
            .await
            {
                Ok(_) => {
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
    async fn committed(
        &self,
        state: Option<Account>,
        events: Vec<AccountEvent>,
        from_version: i64,
    ) -> Result<Executed, CommandError> {
        crate::metrics::record_events(&events);
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

fn encode_all(events: &[AccountEvent]) -> Result<Vec<NewEvent>, EncodeError> {
    events.iter().map(NewEvent::from_domain).collect()
}
