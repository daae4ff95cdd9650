//! The account aggregate: the rules of sign-up and activation, free of I/O.
//!
//! `decide` turns a command and the current state into new events (or refuses
//! it); `apply` folds an event into state and never refuses anything, because
//! what is in the log has happened. "No account yet" is `None`, not a
//! half-initialised struct. The store and the workers own the I/O around it.
//!
//! Each sign-up is a registration of its own (its own stream). A pending
//! registration never owns its address against a later sign-up: the later
//! one supersedes it, and is then *contested*, so confirming it takes its
//! password as well as the link. A registration ends (superseded, cancelled,
//! expired) or becomes the active account.
//!
//! The rules live with their concern, each deciding its own commands, so one
//! can be read (and changed) without the others: [`registration`] (sign-up,
//! the address policy, activation and how a registration ends),
//! [`requests`] (the email-request outbox), [`credentials`] (passwords and
//! signing in) and [`moderation`] (what operators do). This module holds the
//! state they share, routes each command to its concern and folds events.

mod credentials;
mod moderation;
mod registration;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use credentials::SignInRefused;
pub use registration::{
    AddressClaim, AddressDecision, AddressSignUp, Registration, decide_address,
};
use requests::{Delivery, Request, RequestKind};
pub use requests::{EmailPlan, RetryNotNeeded, RetryPlan, SIGN_UP_NOTICE_INTERVAL};

use super::{
    EmailAddress, Locale, Username,
    events::{AccountEvent, IssuedKey, PasswordChangeReason, PasswordHash},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    /// Registered, waiting for its link to be confirmed.
    Pending,
    Active,
    /// A later sign-up for the same address replaced it.
    Superseded,
    /// Its address's owner said "This wasn't me".
    Cancelled,
    /// Not confirmed within `REGISTRATION_TTL`.
    Expired,
    /// An active account an operator blocked; it cannot sign in.
    Blocked,
}

impl AccountStatus {
    /// Every status, in the order listings name them.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Active,
        Self::Blocked,
        Self::Superseded,
        Self::Cancelled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Blocked => "blocked",
        }
    }

    /// Superseded, cancelled or expired: a registration that is over and
    /// holds no claims any more.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Superseded | Self::Cancelled | Self::Expired)
    }
}

/// The state of one account, rebuilt from its stream (or from a snapshot
/// of it, see [`super::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    /// Taken from the registration as recorded (see
    /// [`Username::from_record`]), like the address and the locale.
    #[serde(with = "super::snapshot::username")]
    pub username: Username,
    #[serde(with = "super::snapshot::email")]
    pub email: EmailAddress,
    /// The current password's hash (redacted in `Debug`).
    pub password_hash: PasswordHash,
    #[serde(with = "super::snapshot::locale")]
    pub locale: Locale,
    /// `None` for registrations recorded before the time was kept.
    pub registered_at: Option<DateTime<Utc>>,
    /// The pending registration this one replaced; see [`Self::is_contested`].
    pub supersedes: Option<Uuid>,
    /// The active account that owns this registration's address; such a
    /// registration only holds its username until it expires.
    pub address_owner: Option<Uuid>,
    pub status: AccountStatus,
    /// The stream version this state reflects; the expected version of the
    /// next append.
    pub version: i64,
    pub last_email_at: Option<DateTime<Utc>>,
    /// When the newest sign-up attempt with this account's address was
    /// recorded; see [`SIGN_UP_NOTICE_INTERVAL`].
    last_sign_up_notice_at: Option<DateTime<Utc>>,
    requests: HashMap<Uuid, Request>,
    /// Sequence of the newest request whose email carries a key; keys of older
    /// requests are revoked when it is issued.
    newest_key_request: i64,
    /// Sequence of the newest password reset request: only its key may
    /// reset the password (a newer request revokes older links).
    newest_reset_request: i64,
    /// Sequence of the last change or reset of the password: reset requests
    /// older than it are spent (a reset link works once, and a change makes
    /// outstanding links useless).
    password_set_at: i64,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Register(Registration),
    /// Ask for a fresh activation email (resend).
    RequestActivation {
        request_id: Uuid,
    },
    /// Someone signed up again with this account's address, at `at`.
    RecordSignUpAttempt {
        request_id: Uuid,
        at: DateTime<Utc>,
    },
    RecordEmailSent {
        request_id: Uuid,
        sent_at: DateTime<Utc>,
        key: Option<IssuedKey>,
    },
    RecordEmailFailed {
        request_id: Uuid,
        reason: String,
        permanent: bool,
        attempts: u32,
    },
    /// Confirm the link of `request_id`. A contested registration also
    /// needs its password, verified by the caller (`password_confirmed`).
    Activate {
        request_id: Uuid,
        at: DateTime<Utc>,
        password_confirmed: bool,
    },
    /// A later sign-up for the same address, registration `by`, replaces
    /// this pending one.
    Supersede {
        by: Uuid,
        at: DateTime<Utc>,
    },
    /// "This wasn't me", through the link of `request_id`.
    Cancel {
        request_id: Uuid,
        at: DateTime<Utc>,
    },
    /// End the registration if it is still pending `ttl` after it was made.
    Expire {
        at: DateTime<Utc>,
        ttl: chrono::Duration,
    },
    /// The address's email budget is spent: record the request as not sent.
    RecordEmailWithheld {
        request_id: Uuid,
        reason: String,
    },
    /// An operator verifies the account without its link.
    ActivateManually {
        at: DateTime<Utc>,
    },
    Block {
        reason: String,
        at: DateTime<Utc>,
    },
    Unblock {
        at: DateTime<Utc>,
    },
    /// An operator re-drives the email of a request whose delivery failed for
    /// good, as the new request `request_id`.
    RetryEmail {
        failed_request_id: Uuid,
        request_id: Uuid,
    },
    /// Someone asked for a password reset for this account's address. An
    /// active account gets a reset link, a pending one its activation link.
    RequestPasswordReset {
        request_id: Uuid,
    },
    /// The signed-in owner changed the password (the current one was checked).
    ChangePassword {
        password_hash: PasswordHash,
        notice_request_id: Uuid,
        at: DateTime<Utc>,
    },
    /// The owner set a new password with the key of `reset_request_id`.
    ResetPassword {
        reset_request_id: Uuid,
        password_hash: PasswordHash,
        notice_request_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A successful sign-in found `replaces` made with older Argon2
    /// parameters and hashed the same password again.
    UpgradePasswordHash {
        replaces: PasswordHash,
        password_hash: PasswordHash,
        at: DateTime<Utc>,
    },
}

impl AccountCommand {
    /// Commands that ask for an email to the account's address; merged into
    /// a request still outstanding, they record nothing new.
    pub fn asks_for_email(&self) -> bool {
        matches!(
            self,
            Self::RequestActivation { .. } | Self::RecordSignUpAttempt { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the account already exists")]
    AlreadyExists,
    #[error("no such account")]
    NoSuchAccount,
    #[error("request {0} is not in this account's stream")]
    UnknownRequest(Uuid),
    #[error("the registration is {}", .0.as_str())]
    RegistrationEnded(AccountStatus),
    #[error("the registration is not pending (it is {})", .0.as_str())]
    NotPending(AccountStatus),
    #[error("the registration is contested: confirming it needs its password")]
    PasswordRequired,
    #[error("the address belongs to another account; this registration cannot be confirmed")]
    AddressOwnedElsewhere,
    #[error("the account is already active")]
    AlreadyActive,
    #[error("the account is not active (it is {})", .0.as_str())]
    NotActive(AccountStatus),
    #[error("the account is already blocked")]
    AlreadyBlocked,
    #[error("the account is not blocked")]
    NotBlocked,
    #[error("the reset link is unknown, used or replaced by a newer one")]
    ResetLinkUnusable,
}

/// Decides what `command` records on the account `state` (nothing when it
/// is a no-op), or refuses it. Each concern decides its own commands; this
/// only routes them.
pub fn decide(
    state: Option<&Account>,
    command: AccountCommand,
) -> Result<Vec<AccountEvent>, DomainError> {
    let Some(account) = state else {
        return match command {
            AccountCommand::Register(registration) => Ok(registration::register(registration)),
            _ => Err(DomainError::NoSuchAccount),
        };
    };
    match command {
        AccountCommand::Register(_) => Err(DomainError::AlreadyExists),
        AccountCommand::Activate {
            request_id,
            at,
            password_confirmed,
        } => account.activate(request_id, at, password_confirmed),
        AccountCommand::Supersede { by, at } => account.supersede(by, at),
        AccountCommand::Cancel { request_id, at } => account.cancel(request_id, at),
        AccountCommand::Expire { at, ttl } => Ok(account.expire(at, ttl)),
        AccountCommand::RequestActivation { request_id } => {
            Ok(account.request_activation(request_id))
        }
        AccountCommand::RecordSignUpAttempt { request_id, at } => {
            Ok(account.record_sign_up_attempt(request_id, at))
        }
        AccountCommand::RecordEmailSent {
            request_id,
            sent_at,
            key,
        } => account.record_email_sent(request_id, sent_at, key),
        AccountCommand::RecordEmailFailed {
            request_id,
            reason,
            permanent,
            attempts,
        } => account.record_email_failed(request_id, reason, permanent, attempts),
        AccountCommand::RecordEmailWithheld { request_id, reason } => {
            account.record_email_withheld(request_id, reason)
        }
        AccountCommand::RetryEmail {
            failed_request_id,
            request_id,
        } => account.retry_email(failed_request_id, request_id),
        AccountCommand::RequestPasswordReset { request_id } => {
            Ok(account.password_reset_request(request_id))
        }
        AccountCommand::ChangePassword {
            password_hash,
            notice_request_id,
            at,
        } => account.change_password(password_hash, notice_request_id, at),
        AccountCommand::ResetPassword {
            reset_request_id,
            password_hash,
            notice_request_id,
            at,
        } => account.reset_password(reset_request_id, password_hash, notice_request_id, at),
        AccountCommand::UpgradePasswordHash {
            replaces,
            password_hash,
            at,
        } => Ok(account.upgrade_password_hash(&replaces, password_hash, at)),
        AccountCommand::ActivateManually { at } => account.activate_manually(at),
        AccountCommand::Block { reason, at } => account.block(reason, at),
        AccountCommand::Unblock { at } => account.unblock(at),
    }
}

/// Folds one event, recorded at stream `version`, into the state.
pub fn apply(state: Option<Account>, event: &AccountEvent, version: i64) -> Option<Account> {
    if let AccountEvent::AccountRegistered(registered) = event {
        return Some(Account {
            id: registered.account_id,
            username: Username::from_record(&registered.username, &registered.username_canonical),
            email: EmailAddress::from_record(&registered.email, &registered.email_canonical),
            password_hash: registered.password_hash.clone(),
            locale: Locale::from_record(&registered.locale),
            registered_at: registered.registered_at,
            supersedes: registered.supersedes,
            address_owner: registered.address_owner,
            status: AccountStatus::Pending,
            version,
            last_email_at: None,
            last_sign_up_notice_at: None,
            requests: HashMap::new(),
            newest_key_request: 0,
            newest_reset_request: 0,
            password_set_at: 0,
        });
    }
    let mut account = state?;
    account.version = version;
    match event {
        AccountEvent::AccountRegistered(_) => {}
        AccountEvent::ActivationRequested(e) => {
            account.add_request(e.request_id, RequestKind::Activation, version);
            account.newest_key_request = version;
        }
        AccountEvent::SignUpAttemptedForExistingEmail(e) => {
            account.add_request(e.request_id, RequestKind::ExistingEmailNotice, version);
            account.last_sign_up_notice_at = e.attempted_at.or(account.last_sign_up_notice_at);
            if account.status == AccountStatus::Pending {
                account.newest_key_request = version;
            }
        }
        AccountEvent::EmailSent(e) => {
            if let Some(request) = account.requests.get_mut(&e.request_id) {
                request.delivery = Delivery::Emailed;
            }
            account.last_email_at = Some(e.sent_at);
            account.forget_old_settled_requests();
        }
        AccountEvent::EmailFailed(e) => {
            if let Some(request) = account.requests.get_mut(&e.request_id)
                && request.delivery == Delivery::Outstanding
            {
                request.delivery = Delivery::Failed;
            }
        }
        AccountEvent::AccountActivated(_) | AccountEvent::AccountActivatedManually(_) => {
            account.status = AccountStatus::Active;
        }
        AccountEvent::AccountBlocked(_) => account.status = AccountStatus::Blocked,
        AccountEvent::AccountUnblocked(_) => account.status = AccountStatus::Active,
        AccountEvent::RegistrationSuperseded(_) => account.status = AccountStatus::Superseded,
        AccountEvent::RegistrationCancelled(_) => account.status = AccountStatus::Cancelled,
        AccountEvent::RegistrationExpired(_) => account.status = AccountStatus::Expired,
        AccountEvent::EmailWithheld(e) => {
            if let Some(request) = account.requests.get_mut(&e.request_id)
                && request.delivery == Delivery::Outstanding
            {
                request.delivery = Delivery::Withheld;
            }
            account.forget_old_settled_requests();
        }
        AccountEvent::EmailRetryRequested(e) => {
            let kind = account
                .requests
                .get(&e.retry_of)
                .map_or(RequestKind::Activation, |original| original.kind);
            account.add_request(e.request_id, kind, version);
            let pending = account.status == AccountStatus::Pending;
            match kind {
                RequestKind::Activation => account.newest_key_request = version,
                RequestKind::ExistingEmailNotice if pending => account.newest_key_request = version,
                RequestKind::PasswordReset => account.newest_reset_request = version,
                RequestKind::ExistingEmailNotice | RequestKind::PasswordChangedNotice => {}
            }
        }
        AccountEvent::PasswordResetRequested(e) => {
            account.add_request(e.request_id, RequestKind::PasswordReset, version);
            account.newest_reset_request = version;
        }
        AccountEvent::PasswordChanged(e) => {
            account.password_hash = e.password_hash.clone();
            if e.reason != PasswordChangeReason::Rehash {
                account.password_set_at = version;
            }
            if let Some(notice) = e.notice_request_id {
                account.add_request(notice, RequestKind::PasswordChangedNotice, version);
            }
        }
    }
    Some(account)
}

/// Rebuilds state from a whole stream, in order; versions count from 1.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Option<Account> {
    events
        .into_iter()
        .zip(1..)
        .fold(None, |state, (event, version)| apply(state, event, version))
}
