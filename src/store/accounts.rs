//! Running commands against account streams: load, decide, append, and on a
//! lost race load and decide again.
//!
//! This is the one place web handlers and workers change an account, so the
//! optimistic-concurrency loop is written once.

use std::time::Duration;

use rand::RngExt as _;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AppendError, Claim, ClaimKind, EventMetadata, NewEvent, account_stream, append, load_stream,
};
use crate::domain::{
    Account, AccountCommand, AccountEvent, DecodeError, DomainError, EncodeError, Registration,
    account::apply, decide,
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
    #[error("{} is already claimed", match .0 { ClaimKind::Username => "username", ClaimKind::Email => "email" })]
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

/// Rebuilds one account from its stream; `None` when it does not exist.
pub async fn load(pool: &PgPool, account_id: Uuid) -> Result<Option<Account>, CommandError> {
    let stream_id = account_stream(account_id);
    let mut state = None;
    for recorded in load_stream(pool, &stream_id).await? {
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
/// transaction. A taken claim is reported, never overwritten.
pub async fn register(
    pool: &PgPool,
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
    let encoded = events
        .iter()
        .map(NewEvent::from_domain)
        .collect::<Result<Vec<_>, _>>()?;
    match append(
        pool,
        &account_stream(account_id),
        0,
        &encoded,
        &claims,
        metadata,
    )
    .await
    {
        Ok(_) => {
            crate::metrics::record_events(&events);
            Ok(Executed {
                account: fold(None, &events, 0).ok_or(DomainError::NoSuchAccount)?,
                events,
            })
        }
        Err(AppendError::ClaimTaken(kind)) => Err(CommandError::ClaimTaken(kind)),
        // A fresh random id already in use would be a broken RNG, not a race.
        Err(AppendError::Conflict { stream_id, .. }) => Err(CommandError::Contended(stream_id)),
        Err(AppendError::Database(e)) => Err(e.into()),
    }
}

/// Runs `command` against an existing account, re-deciding on a lost race.
pub async fn execute(
    pool: &PgPool,
    account_id: Uuid,
    command: AccountCommand,
    metadata: &EventMetadata,
) -> Result<Executed, CommandError> {
    execute_from(pool, account_id, None, command, metadata).await
}

/// Like [`execute`], starting from `known`, a state the caller has just
/// loaded; the stream is read again only if another writer got there first.
pub async fn execute_on(
    pool: &PgPool,
    known: Account,
    command: AccountCommand,
    metadata: &EventMetadata,
) -> Result<Executed, CommandError> {
    execute_from(pool, known.id, Some(known), command, metadata).await
}

async fn execute_from(
    pool: &PgPool,
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
            None => load(pool, account_id).await?,
        };
        let Some(account) = current else {
            return Err(DomainError::NoSuchAccount.into());
        };
        let events = decide(Some(&account), command.clone())?;
        if events.is_empty() {
            return Ok(Executed { events, account });
        }
        let encoded = events
            .iter()
            .map(NewEvent::from_domain)
            .collect::<Result<Vec<_>, _>>()?;
        let expected_version = account.version;
        match append(pool, &stream_id, expected_version, &encoded, &[], metadata).await {
            Ok(_) => {
                crate::metrics::record_events(&events);
                let account = fold(Some(account), &events, expected_version)
                    .ok_or(DomainError::NoSuchAccount)?;
                return Ok(Executed { events, account });
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(AppendError::ClaimTaken(kind)) => return Err(CommandError::ClaimTaken(kind)),
            Err(AppendError::Database(e)) => return Err(e.into()),
        }
    }
    Err(CommandError::Contended(stream_id))
}

fn fold(state: Option<Account>, events: &[AccountEvent], from_version: i64) -> Option<Account> {
    events
        .iter()
        .zip(from_version + 1..)
        .fold(state, |state, (event, version)| {
            apply(state, event, version)
        })
}
