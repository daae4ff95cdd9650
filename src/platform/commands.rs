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
//! A sign-up may touch three streams in one transaction: the new
//! registration, the address's current holder (a pending registration it
//! supersedes, or an active account whose owner is told of the attempt),
//! and, for an owned address, the previous sign-up held against it, which
//! it supersedes. Claims move only there, with the event that ends the
//! earlier registration.
//! What a sign-up does to those streams is the domain's address policy
//! (`domain::account::decide_address`); here the holders are only read,
//! under the address lock, and the outcome appended in one transaction.
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
        Account, AccountCommand, AccountEvent, AddressClaim, DecodeError, DomainError,
        EmailAddress, EncodeError, Locale, PasswordHash, Registration, Username,
        account::{AddressDecision, AddressSignUp, apply, decide_address},
        decide,
        snapshot::{SNAPSHOT_SCHEMA, snapshot_due},
    },
    platform::{
        queue::EmailQueue,
        store::{
            self, Append, AppendError, Claim, ClaimKind, EventMetadata, NewEvent, RecordedEvent,
            StoredSnapshot, account_stream,
        },
    },
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

/// What a person asked for at sign-up, parsed at the edge.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub username: Username,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    pub locale: Locale,
}

/// What a sign-up did. The person is answered the same `202` whichever it
/// was; the difference is for logs and tests.
#[derive(Debug)]
pub struct SignedUp {
    /// The new registration, as it stands after the sign-up.
    pub registration: Account,
    pub address: AddressClaim,
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

    /// Registers a sign-up as a new registration that always claims its
    /// username, whatever the address: a taken username is the only refusal,
    /// so answers never tell whether an address has an account. The address
    /// goes to the new registration when it is free or held by a pending
    /// registration (which is superseded in the same transaction); an active
    /// or blocked account keeps it, its owner is told of the attempt, and
    /// the new registration supersedes the previous sign-up held against
    /// that address, so a later sign-up frees an earlier one's username
    /// whatever the address. A lost race on the address (a concurrent
    /// sign-up, activation or expiry) is decided again.
    pub async fn sign_up(
        &self,
        sign_up: SignUp,
        metadata: &EventMetadata,
    ) -> Result<SignedUp, CommandError> {
        let account_id = Uuid::new_v4();
        let request_id = Uuid::now_v7();
        let email = sign_up.email.canonical();
        let claim = |kind, value: &str| {
            (
                Claim {
                    kind,
                    value: value.to_owned(),
                },
                account_id,
            )
        };
        for attempt in 0..MAX_ATTEMPTS {
            pause_before_round(attempt).await;
            let mut tx = store::lock_address(&self.pool, email).await?;
            let holder = claimant(&mut tx, ClaimKind::Email, email).await?;
            let previous_attempt = match &holder {
                Some(owner) if owner.owns_its_address() => {
                    claimant(&mut tx, ClaimKind::EmailAttempt, email).await?
                }
                _ => None,
            };
            let at = Utc::now();
            let sign_up_at = AddressSignUp {
                registration_id: account_id,
                notice_request_id: Uuid::now_v7(),
                at,
            };
            let AddressDecision::Record {
                address,
                holder_writes,
            } = decide_address(holder, previous_attempt, sign_up_at)?
            else {
                // Read a claim just before its registration ended and
                // released it: decide again on the address's new holders.
                continue;
            };
            let registration = Registration {
                account_id,
                request_id,
                username: sign_up.username.clone(),
                email: sign_up.email.clone(),
                password_hash: sign_up.password_hash.clone(),
                locale: sign_up.locale.clone(),
                registered_at: at,
                address,
            };
            let events = decide(None, AccountCommand::Register(registration))?;
            let address_claim = if address.claims_address() {
                ClaimKind::Email
            } else {
                ClaimKind::EmailAttempt
            };
            let claims = [
                claim(ClaimKind::Username, sign_up.username.canonical()),
                claim(address_claim, email),
            ];
            let mut appends = vec![Append {
                account_id,
                expected_version: 0,
                events: encode_all(&events)?,
                releases_claims: false,
            }];
            for (account, events) in &holder_writes {
                appends.push(Append {
                    account_id: account.id,
                    expected_version: account.version,
                    events: encode_all(events)?,
                    releases_claims: events.iter().any(AccountEvent::ends_registration),
                });
            }
            match store::append_all_in(tx, &appends, &claims, metadata).await {
                Ok(()) => {
                    for (account, events) in holder_writes {
                        if events.is_empty() {
                            // Merged into the owner's notice: it is on its
                            // way or was sent within the interval.
                            self.push_outstanding(&account).await;
                        } else {
                            let from_version = account.version;
                            self.committed(Some(account), events, from_version).await?;
                        }
                    }
                    let executed = self.committed(None, events, 0).await?;
                    return Ok(SignedUp {
                        registration: executed.account,
                        address,
                    });
                }
                Err(AppendError::ClaimTaken(ClaimKind::Username)) => {
                    return Err(CommandError::ClaimTaken(ClaimKind::Username));
                }
                Err(
                    AppendError::ClaimTaken(ClaimKind::Email | ClaimKind::EmailAttempt)
                    | AppendError::Conflict { .. },
                ) => {
                    continue;
                }
                Err(AppendError::Database(e)) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(account_stream(account_id)))
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
    async fn committed(
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
async fn claimant(
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
async fn pause_before_round(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let ceiling = Duration::from_millis(1 << attempt.min(6)).min(MAX_PAUSE);
    let pause = ceiling.mul_f64(rand::rng().random::<f64>());
    tokio::time::sleep(pause).await;
}

fn encode_all(events: &[AccountEvent]) -> Result<Vec<NewEvent>, EncodeError> {
    events.iter().map(NewEvent::from_domain).collect()
}
