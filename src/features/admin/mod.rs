//! The host application's handle on its users: find, list, inspect and act
//! on accounts, for the admin API (`/api/admin/*`) and `porter accounts`.
//!
//! Reads of one account (lookup, state, history) load its stream, so an
//! answer right after a write shows it: they never wait for the projector.
//! Listings page through the `accounts` read model, which trails the log by
//! the projector's round (about 100 ms). Actions are commands on the
//! aggregate like any other: concurrent ones are decided at the stream's
//! expected version, and an action that does not apply is an
//! [`AdminError::Conflict`] with a clear code, never a success that wrote
//! nothing.

pub mod api_keys;
pub mod cli;
pub mod http;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{
    ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type},
};
use uuid::Uuid;

use crate::{
    domain::{
        Account, AccountCommand, AccountEvent, AccountStatus, DomainError, EmailAddress, Username,
        account::apply,
    },
    features::accounts::read_model::{self, ListedAccount},
    platform::{
        commands::{self, CommandError, Commands},
        link_keys::LinkKeys,
        sessions::Sessions,
        store::{self, ClaimKind, EventMetadata},
    },
};

/// Most accounts one listing page holds.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such account")]
    NotFound,
    /// The action does not apply to the account as it stands: `code`
    /// names the refusal for clients, `source` says why.
    #[error("the action does not apply")]
    Conflict {
        code: &'static str,
        source: DomainError,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Redis could not be reached to end sessions or revoke keys.
    #[error("redis unavailable")]
    Unavailable(#[source] redis::RedisError),
}

impl From<sqlx::Error> for AdminError {
    fn from(error: sqlx::Error) -> Self {
        Self::Command(error.into())
    }
}

impl From<DomainError> for AdminError {
    fn from(error: DomainError) -> Self {
        let code = match &error {
            DomainError::NoSuchAccount => return Self::NotFound,
            DomainError::AlreadyActive => "already_active",
            DomainError::NotActive(_) => "not_active",
            DomainError::AlreadyBlocked => "already_blocked",
            DomainError::NotBlocked => "not_blocked",
            DomainError::NotPending(_) => "not_pending",
            DomainError::RegistrationEnded(_) => "registration_ended",
            DomainError::AddressOwnedElsewhere => "address_owned_elsewhere",
            DomainError::AlreadyExists
            | DomainError::UnknownRequest(_)
            | DomainError::PasswordRequired
            | DomainError::ResetLinkUnusable => "not_applicable",
        };
        Self::Conflict {
            code,
            source: error,
        }
    }
}

/// What the admin API shows of one account.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDetails {
    pub id: Uuid,
    #[schema(schema_with = read_model::status_schema)]
    pub status: &'static str,
    pub username: String,
    /// As typed at sign-up
    pub email: String,
    pub locale: String,
    pub registered_at: DateTime<Utc>,
    #[schema(required = true)]
    pub activated_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub blocked_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub block_reason: Option<String>,
    /// When a registration that never became an account was superseded,
    /// cancelled or expired
    #[schema(required = true)]
    pub ended_at: Option<DateTime<Utc>>,
    pub emails_sent: u32,
    #[schema(required = true)]
    pub last_delivery: Option<Delivery>,
    /// Confirming it needs its password (it superseded another registration
    /// of the address)
    pub contested: bool,
    #[schema(minimum = 1)]
    pub version: i64,
}

/// The outcome of the account's latest email request that has one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// `sent`, `failed` or `withheld`.
    #[schema(schema_with = outcome_schema)]
    pub outcome: &'static str,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn outcome_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["sent", "failed", "withheld"]))
        .into()
}

/// One event of an account's history, decoded and upcast, secrets removed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub position: i64,
    pub version: i64,
    /// The internal event type, e.g. AccountRegistered
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub recorded_at: DateTime<Utc>,
    /// The payload in its current schema version, without password hashes
    #[schema(schema_with = data_schema)]
    pub data: Value,
    /// request_id, causation_id, client_ip_hash, actor (`api-key:<id>` for
    /// admin actions)
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// An object that never holds a password hash.
fn data_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The payload in its current schema version, without password hashes",
        ))
        .into()
}

/// A listing page and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AccountPage)]
pub struct Page {
    pub accounts: Vec<ListedAccount>,
    /// Pass as `after` for the next page; null on the last page
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The account holding `email` (its canonical form), if any.
pub async fn find_by_email(
    commands: &Commands,
    email: &EmailAddress,
) -> Result<Option<AccountDetails>, AdminError> {
    find_by_claim(commands, ClaimKind::Email, email.canonical()).await
}

/// The account holding `username` (its canonical form), if any.
pub async fn find_by_username(
    commands: &Commands,
    username: &Username,
) -> Result<Option<AccountDetails>, AdminError> {
    find_by_claim(commands, ClaimKind::Username, username.canonical()).await
}

async fn find_by_claim(
    commands: &Commands,
    kind: ClaimKind,
    value: &str,
) -> Result<Option<AccountDetails>, AdminError> {
    match store::claim_holder(commands.pool(), kind, value).await? {
        Some(id) => Ok(Some(details(commands.pool(), id).await?)),
        None => Ok(None),
    }
}

/// The state of account `id`, from its stream.
pub async fn details(pool: &PgPool, id: Uuid) -> Result<AccountDetails, AdminError> {
    let mut state: Option<Account> = None;
    let mut view: Option<AccountDetails> = None;
    for (recorded, event) in commands::decoded_stream(pool, id).await? {
        state = apply(state, &event, recorded.version);
        view = fold_details(view, &event, recorded.recorded_at);
        if let (Some(view), Some(state)) = (view.as_mut(), state.as_ref()) {
            view.status = state.status.as_str();
            view.contested = state.is_contested();
            view.version = state.version;
        }
    }
    view.ok_or(AdminError::NotFound)
}

fn fold_details(
    view: Option<AccountDetails>,
    event: &AccountEvent,
    recorded_at: DateTime<Utc>,
) -> Option<AccountDetails> {
    if let AccountEvent::AccountRegistered(registered) = event {
        return Some(AccountDetails {
            id: registered.account_id,
            status: AccountStatus::Pending.as_str(),
            username: registered.username.clone(),
            email: registered.email.clone(),
            locale: registered.locale.clone(),
            registered_at: registered.registered_at.unwrap_or(recorded_at),
            activated_at: None,
            blocked_at: None,
            block_reason: None,
            ended_at: None,
            emails_sent: 0,
            last_delivery: None,
            contested: false,
            version: 1,
        });
    }
    let mut view = view?;
    match event {
        AccountEvent::AccountActivated(e) => view.activated_at = Some(e.activated_at),
        AccountEvent::AccountActivatedManually(e) => view.activated_at = Some(e.activated_at),
        AccountEvent::AccountBlocked(e) => {
            view.blocked_at = Some(e.at);
            view.block_reason = Some(e.reason.clone());
        }
        AccountEvent::AccountUnblocked(_) => {
            view.blocked_at = None;
            view.block_reason = None;
        }
        AccountEvent::RegistrationSuperseded(e) => view.ended_at = Some(e.at),
        AccountEvent::RegistrationCancelled(e) => view.ended_at = Some(e.at),
        AccountEvent::RegistrationExpired(e) => view.ended_at = Some(e.at),
        AccountEvent::EmailSent(e) => {
            view.emails_sent += 1;
            view.last_delivery = Some(Delivery {
                outcome: "sent",
                at: e.sent_at,
                reason: None,
            });
        }
        AccountEvent::EmailFailed(e) => {
            view.last_delivery = Some(Delivery {
                outcome: "failed",
                at: recorded_at,
                reason: Some(e.reason.clone()),
            });
        }
        AccountEvent::EmailWithheld(e) => {
            view.last_delivery = Some(Delivery {
                outcome: "withheld",
                at: recorded_at,
                reason: Some(e.reason.clone()),
            });
        }
        AccountEvent::AccountRegistered(_)
        | AccountEvent::ActivationRequested(_)
        | AccountEvent::SignUpAttemptedForExistingEmail(_)
        | AccountEvent::EmailRetryRequested(_)
        | AccountEvent::PasswordResetRequested(_)
        | AccountEvent::PasswordChanged(_) => {}
    }
    Some(view)
}

/// The history of account `id`, oldest first.
pub async fn history(pool: &PgPool, id: Uuid) -> Result<Vec<HistoryEntry>, AdminError> {
    let events = commands::decoded_stream(pool, id).await?;
    if events.is_empty() {
        return Err(AdminError::NotFound);
    }
    events
        .into_iter()
        .map(|(recorded, event)| {
            Ok(HistoryEntry {
                position: recorded.position,
                version: recorded.version,
                event_type: event.event_type(),
                recorded_at: recorded.recorded_at,
                data: event.public_payload().map_err(CommandError::from)?,
                metadata: recorded.metadata,
            })
        })
        .collect()
}

/// A listing cursor: the `(registered_at, id)` of the page's last account,
/// opaque to clients.
pub fn encode_cursor(account: &ListedAccount) -> String {
    format!(
        "{}_{}",
        account.registered_at.timestamp_micros(),
        account.id.simple()
    )
}

/// The position a cursor made by [`encode_cursor`] stands for; `None` when
/// it is not one.
pub fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('_')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::try_parse(id).ok()?))
}

/// A page of at most `limit` accounts (1 to [`MAX_PAGE`]) after `after`,
/// with `status` if given.
pub async fn list(
    pool: &PgPool,
    status: Option<AccountStatus>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Page, AdminError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let accounts = read_model::list_page(pool, status, after, limit).await?;
    let next_cursor = (accounts.len() as i64 == limit)
        .then(|| accounts.last().map(encode_cursor))
        .flatten();
    Ok(Page {
        accounts,
        next_cursor,
    })
}

/// The statuses a listing may filter on, by name.
pub fn parse_status(name: &str) -> Option<AccountStatus> {
    AccountStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == name)
}

/// A new activation email for a pending registration, under the same rules
/// as a resend (merged into one still on its way; the address's budget).
pub async fn resend_activation(
    commands: &Commands,
    id: Uuid,
    metadata: &EventMetadata,
) -> Result<(), AdminError> {
    let account = commands.load(id).await?.ok_or(AdminError::NotFound)?;
    if !account.may_request_activation() {
        return Err(DomainError::NotPending(account.status).into());
    }
    let command = AccountCommand::RequestActivation {
        request_id: Uuid::now_v7(),
    };
    commands.execute_on(account, command, metadata).await?;
    Ok(())
}

/// Verifies a pending registration by hand.
pub async fn activate(
    commands: &Commands,
    id: Uuid,
    metadata: &EventMetadata,
) -> Result<AccountDetails, AdminError> {
    act(
        commands,
        id,
        AccountCommand::ActivateManually { at: Utc::now() },
        metadata,
    )
    .await
}

/// What blocking an account takes away besides sign-in: its sessions and
/// its outstanding activation and reset keys.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub sessions: &'a Sessions,
    pub activation_keys: &'a LinkKeys,
    pub reset_keys: &'a LinkKeys,
}

/// Blocks an active account, then ends its sessions and revokes its keys.
/// The block is recorded first: a revocation that fails (Redis away) is an
/// error to retry, and the aggregate already refuses every sign-in.
pub async fn block(
    commands: &Commands,
    access: Access<'_>,
    id: Uuid,
    reason: String,
    metadata: &EventMetadata,
) -> Result<AccountDetails, AdminError> {
    let command = AccountCommand::Block {
        reason,
        at: Utc::now(),
    };
    let details = act(commands, id, command, metadata).await?;
    let ended = access
        .sessions
        .revoke_all(id, None)
        .await
        .map_err(AdminError::Unavailable)?;
    access
        .activation_keys
        .revoke_all(id)
        .await
        .map_err(AdminError::Unavailable)?;
    access
        .reset_keys
        .revoke_all(id)
        .await
        .map_err(AdminError::Unavailable)?;
    tracing::info!(account_id = %id, sessions_ended = ended, "account blocked");
    Ok(details)
}

pub async fn unblock(
    commands: &Commands,
    id: Uuid,
    metadata: &EventMetadata,
) -> Result<AccountDetails, AdminError> {
    act(
        commands,
        id,
        AccountCommand::Unblock { at: Utc::now() },
        metadata,
    )
    .await
}

async fn act(
    commands: &Commands,
    id: Uuid,
    command: AccountCommand,
    metadata: &EventMetadata,
) -> Result<AccountDetails, AdminError> {
    match commands.execute(id, command, metadata).await {
        Ok(_) => details(commands.pool(), id).await,
        Err(CommandError::Domain(error)) => Err(error.into()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let account = ListedAccount {
            id: Uuid::from_u128(42),
            username: "ada".into(),
            email: "ada@example.com".into(),
            status: "active".into(),
            registered_at: DateTime::from_timestamp_micros(1_800_000_000_123_456)
                .expect("timestamp"),
        };
        let cursor = encode_cursor(&account);
        assert_eq!(
            decode_cursor(&cursor),
            Some((account.registered_at, account.id))
        );
        for garbage in ["", "x", "1_", "_0000", "1_nope", "99999999999999999999_0"] {
            assert_eq!(decode_cursor(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn every_status_is_a_filter() {
        for name in [
            "pending",
            "active",
            "blocked",
            "superseded",
            "cancelled",
            "expired",
        ] {
            assert_eq!(parse_status(name).map(AccountStatus::as_str), Some(name));
        }
        assert_eq!(parse_status("Active"), None);
    }
}
