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

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    EmailAddress, Username,
    events::{
        AccountActivated, AccountActivatedManually, AccountBlocked, AccountEvent,
        AccountRegistered, AccountUnblocked, ActivationEmailFailed, ActivationEmailSent,
        ActivationReason, ActivationRequested, EmailRetryRequested, EmailWithheld, IssuedKey,
        PasswordChangeReason, PasswordChanged, PasswordHash, PasswordResetRequested,
        RegistrationCancelled, RegistrationExpired, RegistrationSuperseded,
        SignUpAttemptedForExistingEmail,
    },
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

/// What a request in the stream asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum RequestKind {
    Activation,
    ExistingEmailNotice,
    /// A reset link for an active account.
    PasswordReset,
    /// "Your password was changed", after a change or a reset.
    PasswordChangedNotice,
}

/// Where a request's email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Delivery {
    /// Neither sent nor given up yet.
    Outstanding,
    /// The email went out (even after a recorded failure: a job that ran
    /// twice may send after another gave up, and then the email is out).
    Emailed,
    /// Given up for good; a retry is a new request.
    Failed,
    /// Not sent: the address's email budget was spent.
    Withheld,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Request {
    kind: RequestKind,
    /// Stream version of the requesting event; orders key issuance.
    sequence: i64,
    delivery: Delivery,
}

/// Settled requests an account remembers. A request is looked up after it
/// settled only by a job that ran twice or a repeated operator retry, which
/// come long before this many newer requests settle; an older one is
/// forgotten (a job for it then fails as for an unknown request, sending
/// nothing).
const SETTLED_REQUESTS_KEPT: usize = 16;

/// The state of one account, rebuilt from its stream (or from a snapshot
/// of it, see [`super::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub username_canonical: String,
    pub email: String,
    pub email_canonical: String,
    /// The current password's hash (redacted in `Debug`).
    pub password_hash: PasswordHash,
    pub locale: String,
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

/// A new registration, as parsed at the edge.
#[derive(Debug, Clone)]
pub struct Registration {
    pub account_id: Uuid,
    pub request_id: Uuid,
    pub username: Username,
    pub email: EmailAddress,
    pub password_hash: PasswordHash,
    pub locale: String,
    pub registered_at: DateTime<Utc>,
    pub address: AddressClaim,
}

/// Where a new registration stands with its email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClaim {
    /// Nobody holds the address: the registration claims it.
    Free,
    /// A pending registration holds it: the new one supersedes it and takes
    /// the claim over.
    TakesOver(Uuid),
    /// An active (or blocked) account owns it: the new registration gets no
    /// link, and the owner is told of the attempt. It supersedes the
    /// previous sign-up held against the owner's address, if any, so a
    /// later sign-up frees an earlier one's username whatever the address.
    OwnedBy {
        owner: Uuid,
        supersedes: Option<Uuid>,
    },
}

impl AddressClaim {
    /// What a sign-up does with an address that `holder` holds (or nobody),
    /// `previous_attempt` being the live sign-up held against an owner's
    /// address (only consulted when the address is owned).
    pub fn for_holder(holder: Option<&Account>, previous_attempt: Option<&Account>) -> Self {
        match holder {
            None => Self::Free,
            Some(account) if account.status == AccountStatus::Pending => {
                Self::TakesOver(account.id)
            }
            Some(account) => Self::OwnedBy {
                owner: account.id,
                supersedes: previous_attempt.map(|attempt| attempt.id),
            },
        }
    }
}

/// Sign-up attempts with an account's address within this long of the last
/// one recorded add nothing to its stream: anonymous requests may append at
/// most one notice (and its delivery) per interval to someone else's
/// stream, and its owner gets at most one "someone tried to sign up" email
/// per interval from them (within `EMAIL_PER_ADDRESS` as before).
pub const SIGN_UP_NOTICE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::hours(1);

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

/// Why an account with the right password may not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefused {
    /// The address was never confirmed (or the registration ended).
    NotActive,
    /// An operator blocked the account.
    Blocked,
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

/// What `RetryEmail` does for a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPlan {
    /// Record a new request of the same kind; its job sends the email.
    Retry,
    /// The retry was already recorded (the operator ran it twice); push its
    /// job again, which is harmless.
    AlreadyRequested,
    /// Nothing to send any more.
    NotNeeded(RetryNotNeeded),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryNotNeeded {
    /// The email went out after all.
    AlreadySent,
    /// An activation email for an account that is active now.
    AccountActive,
    /// A newer request carries the account's activation link.
    Superseded,
}

impl std::fmt::Display for RetryNotNeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AlreadySent => "the email was sent after all",
            Self::AccountActive => "the account is active now",
            Self::Superseded => "a newer request carries the activation link",
        })
    }
}

/// What the email worker should do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailPlan {
    /// Nothing: the email went out already, the account is active (for an
    /// activation email), or a newer request will send the link.
    Nothing,
    /// Send an activation link; `sequence` orders it against other keys.
    Activation { sequence: i64 },
    /// Tell the owner someone signed up with their address. A pending account
    /// gets a fresh activation link in it (`Some(sequence)`).
    AlreadyRegistered { activation: Option<i64> },
    /// Send a password reset link; `sequence` orders it against other reset
    /// keys of the account.
    PasswordReset { sequence: i64 },
    /// Tell the owner their password was changed.
    PasswordChanged,
}

pub fn decide(
    state: Option<&Account>,
    command: AccountCommand,
) -> Result<Vec<AccountEvent>, DomainError> {
    let Some(account) = state else {
        return match command {
            AccountCommand::Register(registration) => Ok(register(registration)),
            _ => Err(DomainError::NoSuchAccount),
        };
    };
    match command {
        AccountCommand::Register(_) => Err(DomainError::AlreadyExists),
        // An email still on its way answers the request too: coalesce, so a
        // burst of resends or repeated sign-ups sends one email, not many.
        AccountCommand::RequestActivation { .. } | AccountCommand::RecordSignUpAttempt { .. }
            if account.outstanding_request().is_some() =>
        {
            Ok(vec![])
        }
        AccountCommand::RequestActivation { request_id } => Ok(
            if account.status == AccountStatus::Pending && account.address_owner.is_none() {
                vec![AccountEvent::ActivationRequested(ActivationRequested {
                    request_id,
                    reason: ActivationReason::Resend,
                })]
            } else {
                vec![]
            },
        ),
        AccountCommand::RecordSignUpAttempt { request_id, at } => Ok(
            if account
                .last_sign_up_notice_at
                .is_some_and(|last| at < last + SIGN_UP_NOTICE_INTERVAL)
            {
                vec![]
            } else {
                vec![AccountEvent::SignUpAttemptedForExistingEmail(
                    SignUpAttemptedForExistingEmail {
                        request_id,
                        attempted_at: Some(at),
                    },
                )]
            },
        ),
        AccountCommand::RecordEmailSent {
            request_id,
            sent_at,
            key,
        } => {
            let request = account.request(request_id)?;
            Ok(if request.delivery == Delivery::Emailed {
                vec![]
            } else {
                vec![AccountEvent::ActivationEmailSent(ActivationEmailSent {
                    request_id,
                    sent_at,
                    key,
                })]
            })
        }
        AccountCommand::RecordEmailFailed {
            request_id,
            reason,
            permanent,
            attempts,
        } => {
            let request = account.request(request_id)?;
            Ok(if request.delivery != Delivery::Outstanding {
                vec![]
            } else {
                vec![AccountEvent::ActivationEmailFailed(ActivationEmailFailed {
                    request_id,
                    reason,
                    permanent,
                    attempts,
                })]
            })
        }
        AccountCommand::Activate {
            request_id,
            at,
            password_confirmed,
        } => match account.status {
            // A link of an account that became active (and maybe blocked
            // since) confirms nothing new.
            AccountStatus::Active | AccountStatus::Blocked => Ok(vec![]),
            status if status.is_ended() => Err(DomainError::RegistrationEnded(status)),
            _ if account.address_owner.is_some() => Err(DomainError::AddressOwnedElsewhere),
            _ if account.is_contested() && !password_confirmed => {
                Err(DomainError::PasswordRequired)
            }
            _ => Ok(vec![AccountEvent::AccountActivated(AccountActivated {
                request_id,
                activated_at: at,
            })]),
        },
        AccountCommand::ActivateManually { at } => match account.status {
            AccountStatus::Active | AccountStatus::Blocked => Err(DomainError::AlreadyActive),
            status if status.is_ended() => Err(DomainError::RegistrationEnded(status)),
            _ if account.address_owner.is_some() => Err(DomainError::AddressOwnedElsewhere),
            _ => Ok(vec![AccountEvent::AccountActivatedManually(
                AccountActivatedManually { activated_at: at },
            )]),
        },
        AccountCommand::Block { reason, at } => match account.status {
            AccountStatus::Active => Ok(vec![AccountEvent::AccountBlocked(AccountBlocked {
                reason,
                at,
            })]),
            AccountStatus::Blocked => Err(DomainError::AlreadyBlocked),
            status => Err(DomainError::NotActive(status)),
        },
        AccountCommand::Unblock { at } => match account.status {
            AccountStatus::Blocked => Ok(vec![AccountEvent::AccountUnblocked(AccountUnblocked {
                at,
            })]),
            _ => Err(DomainError::NotBlocked),
        },
        AccountCommand::Supersede { by, at } => match account.status {
            AccountStatus::Pending => Ok(vec![AccountEvent::RegistrationSuperseded(
                RegistrationSuperseded { by, at },
            )]),
            status => Err(DomainError::NotPending(status)),
        },
        AccountCommand::Cancel { request_id, at } => match account.status {
            AccountStatus::Pending => Ok(vec![AccountEvent::RegistrationCancelled(
                RegistrationCancelled { request_id, at },
            )]),
            // A second press of "This wasn't me".
            AccountStatus::Cancelled => Ok(vec![]),
            status => Err(DomainError::NotPending(status)),
        },
        AccountCommand::Expire { at, ttl } => {
            let old_enough = account
                .registered_at
                .is_none_or(|registered_at| registered_at + ttl <= at);
            Ok(if account.status == AccountStatus::Pending && old_enough {
                vec![AccountEvent::RegistrationExpired(RegistrationExpired {
                    at,
                })]
            } else {
                vec![]
            })
        }
        AccountCommand::RecordEmailWithheld { request_id, reason } => {
            let request = account.request(request_id)?;
            Ok(if request.delivery == Delivery::Outstanding {
                vec![AccountEvent::EmailWithheld(EmailWithheld {
                    request_id,
                    reason,
                })]
            } else {
                vec![]
            })
        }
        AccountCommand::RetryEmail {
            failed_request_id,
            request_id,
        } => Ok(match account.retry_plan(failed_request_id, request_id)? {
            RetryPlan::Retry => vec![AccountEvent::EmailRetryRequested(EmailRetryRequested {
                request_id,
                retry_of: failed_request_id,
            })],
            RetryPlan::AlreadyRequested | RetryPlan::NotNeeded(_) => vec![],
        }),
        AccountCommand::RequestPasswordReset { request_id } => {
            Ok(account.password_reset_request(request_id))
        }
        AccountCommand::ChangePassword {
            password_hash,
            notice_request_id,
            at,
        } => {
            if account.may_sign_in().is_err() {
                return Err(DomainError::NotActive(account.status));
            }
            Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
                reason: PasswordChangeReason::Change,
                password_hash,
                changed_at: at,
                reset_request_id: None,
                notice_request_id: Some(notice_request_id),
            })])
        }
        AccountCommand::ResetPassword {
            reset_request_id,
            password_hash,
            notice_request_id,
            at,
        } => {
            if !account.reset_usable(reset_request_id) {
                return Err(DomainError::ResetLinkUnusable);
            }
            Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
                reason: PasswordChangeReason::Reset,
                password_hash,
                changed_at: at,
                reset_request_id: Some(reset_request_id),
                notice_request_id: Some(notice_request_id),
            })])
        }
        // Another writer changed the password since the sign-in read it: the
        // upgrade is moot, and must not undo that change.
        AccountCommand::UpgradePasswordHash { replaces, .. }
            if replaces != account.password_hash =>
        {
            Ok(vec![])
        }
        AccountCommand::UpgradePasswordHash {
            password_hash, at, ..
        } => Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Rehash,
            password_hash,
            changed_at: at,
            reset_request_id: None,
            notice_request_id: None,
        })]),
    }
}

fn register(registration: Registration) -> Vec<AccountEvent> {
    let Registration {
        account_id,
        request_id,
        username,
        email,
        password_hash,
        locale,
        registered_at,
        address,
    } = registration;
    let (supersedes, address_owner) = match address {
        AddressClaim::Free => (None, None),
        AddressClaim::TakesOver(earlier) => (Some(earlier), None),
        AddressClaim::OwnedBy { owner, supersedes } => (supersedes, Some(owner)),
    };
    let registered = AccountEvent::AccountRegistered(AccountRegistered {
        account_id,
        username: username.as_str().to_owned(),
        username_canonical: username.canonical().to_owned(),
        email: email.as_typed().to_owned(),
        email_canonical: email.canonical().to_owned(),
        password_hash,
        locale,
        registered_at: Some(registered_at),
        supersedes,
        address_owner,
    });
    if address_owner.is_some() {
        // The owner is emailed (on the owner's stream); this registration
        // gets no link to confirm.
        return vec![registered];
    }
    vec![
        registered,
        AccountEvent::ActivationRequested(ActivationRequested {
            request_id,
            reason: ActivationReason::SignUp,
        }),
    ]
}

/// Folds one event, recorded at stream `version`, into the state.
pub fn apply(state: Option<Account>, event: &AccountEvent, version: i64) -> Option<Account> {
    if let AccountEvent::AccountRegistered(registered) = event {
        return Some(Account {
            id: registered.account_id,
            username: registered.username.clone(),
            username_canonical: registered.username_canonical.clone(),
            email: registered.email.clone(),
            email_canonical: registered.email_canonical.clone(),
            password_hash: registered.password_hash.clone(),
            locale: registered.locale.clone(),
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
        AccountEvent::ActivationEmailSent(e) => {
            if let Some(request) = account.requests.get_mut(&e.request_id) {
                request.delivery = Delivery::Emailed;
            }
            account.last_email_at = Some(e.sent_at);
            account.forget_old_settled_requests();
        }
        AccountEvent::ActivationEmailFailed(e) => {
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

impl Account {
    /// A registration that superseded another pending one for its address.
    /// Either side may be the address's owner, so confirming it takes the
    /// password chosen at this sign-up as well as the mailbox's link. A
    /// pending registration lives at most `REGISTRATION_TTL`, so this is
    /// "superseded another within the last `REGISTRATION_TTL`".
    pub fn is_contested(&self) -> bool {
        self.supersedes.is_some()
    }

    fn add_request(&mut self, id: Uuid, kind: RequestKind, sequence: i64) {
        self.requests.insert(
            id,
            Request {
                kind,
                sequence,
                delivery: Delivery::Outstanding,
            },
        );
    }

    /// Forgets settled requests (emailed or withheld) beyond the newest
    /// [`SETTLED_REQUESTS_KEPT`], but never the newest key or reset request
    /// (their links still work). Without this the state, and so every
    /// load, would grow with each notice or reset ever requested.
    fn forget_old_settled_requests(&mut self) {
        let mut settled: Vec<(i64, Uuid)> = self
            .requests
            .iter()
            .filter(|(_, request)| {
                matches!(request.delivery, Delivery::Emailed | Delivery::Withheld)
            })
            .filter(|(_, request)| {
                request.sequence != self.newest_key_request
                    && request.sequence != self.newest_reset_request
            })
            .map(|(id, request)| (request.sequence, *id))
            .collect();
        let Some(excess) = settled.len().checked_sub(SETTLED_REQUESTS_KEPT) else {
            return;
        };
        settled.sort_unstable();
        for (_, id) in &settled[..excess] {
            self.requests.remove(id);
        }
    }

    fn request(&self, request_id: Uuid) -> Result<&Request, DomainError> {
        self.requests
            .get(&request_id)
            .ok_or(DomainError::UnknownRequest(request_id))
    }

    /// Whether the owner, having given the right password, may sign in. Every
    /// status but `Active` is refused.
    pub fn may_sign_in(&self) -> Result<(), SignInRefused> {
        match self.status {
            AccountStatus::Active => Ok(()),
            AccountStatus::Blocked => Err(SignInRefused::Blocked),
            AccountStatus::Pending
            | AccountStatus::Superseded
            | AccountStatus::Cancelled
            | AccountStatus::Expired => Err(SignInRefused::NotActive),
        }
    }

    /// Which password the account has: it moves with every change or reset
    /// of the password (the version of the last one, 0 before any) and not
    /// with a rehash, which keeps the password. A sign-in compares the
    /// generation it verified against the one after its session exists
    /// (`web::sign_in`), so no session outlives the password it was opened
    /// with.
    pub fn credential_generation(&self) -> i64 {
        self.password_set_at
    }

    /// Whether the key of `request_id` may still set a new password: it is
    /// the account's newest reset request, no change or reset came after
    /// it, and the account may sign in.
    pub fn reset_usable(&self, request_id: Uuid) -> bool {
        self.requests.get(&request_id).is_some_and(|request| {
            request.kind == RequestKind::PasswordReset
                && request.sequence == self.newest_reset_request
                && request.sequence > self.password_set_at
        }) && self.may_sign_in().is_ok()
    }

    /// What a password reset request records: a reset link for an active
    /// account, a fresh activation link for a pending one, nothing otherwise.
    /// A request already recorded (a job that ran twice) or one arriving while
    /// an earlier email of its kind is still on its way records nothing.
    fn password_reset_request(&self, request_id: Uuid) -> Vec<AccountEvent> {
        if self.requests.contains_key(&request_id) {
            return vec![];
        }
        match self.status {
            AccountStatus::Active if self.outstanding_reset().is_none() => {
                vec![AccountEvent::PasswordResetRequested(
                    PasswordResetRequested { request_id },
                )]
            }
            AccountStatus::Pending
                if self.address_owner.is_none() && self.outstanding_request().is_none() =>
            {
                vec![AccountEvent::ActivationRequested(ActivationRequested {
                    request_id,
                    reason: ActivationReason::Resend,
                })]
            }
            _ => vec![],
        }
    }

    /// A reset email that has not gone out yet and would still be sent.
    fn outstanding_reset(&self) -> Option<Uuid> {
        self.requests
            .iter()
            .filter(|(_, request)| request.kind == RequestKind::PasswordReset)
            .filter(|(_, request)| request.delivery == Delivery::Outstanding)
            .find(|(id, _)| self.reset_usable(**id))
            .map(|(id, _)| *id)
    }

    /// A request whose email has not gone out (nor failed) and that no newer
    /// request replaces: the activation or notice email the account is still
    /// waiting for. Password emails do not count: they answer other requests.
    pub fn outstanding_request(&self) -> Option<Uuid> {
        self.requests
            .iter()
            .filter(|(_, request)| {
                matches!(
                    request.kind,
                    RequestKind::Activation | RequestKind::ExistingEmailNotice
                )
            })
            .filter(|(_, request)| request.delivery == Delivery::Outstanding)
            .filter(|(id, _)| {
                self.email_plan(**id)
                    .is_ok_and(|plan| plan != EmailPlan::Nothing)
            })
            .max_by_key(|(_, request)| request.sequence)
            .map(|(id, _)| *id)
    }

    /// The earliest time another email may go to this account, keeping at
    /// least `min_interval` between two emails to one address.
    pub fn next_email_allowed_at(&self, min_interval: chrono::Duration) -> Option<DateTime<Utc>> {
        self.last_email_at.map(|last| last + min_interval)
    }

    /// Whether the email of `failed_request_id` should be sent again as the
    /// new request `retry_id`. Only a request that never went out is retried,
    /// and an activation email only while it would still be the account's
    /// newest link; a notice to the owner of an existing account is always
    /// worth sending.
    pub fn retry_plan(
        &self,
        failed_request_id: Uuid,
        retry_id: Uuid,
    ) -> Result<RetryPlan, DomainError> {
        let request = self.request(failed_request_id)?;
        if self.requests.contains_key(&retry_id) {
            return Ok(RetryPlan::AlreadyRequested);
        }
        if request.delivery == Delivery::Emailed {
            return Ok(RetryPlan::NotNeeded(RetryNotNeeded::AlreadySent));
        }
        if request.kind == RequestKind::PasswordReset && !self.reset_usable(failed_request_id) {
            return Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded));
        }
        if request.kind == RequestKind::Activation {
            if self.status == AccountStatus::Active {
                return Ok(RetryPlan::NotNeeded(RetryNotNeeded::AccountActive));
            }
            if request.sequence < self.newest_key_request {
                return Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded));
            }
        }
        Ok(RetryPlan::Retry)
    }

    /// Decides what the email worker should send for `request_id`.
    pub fn email_plan(&self, request_id: Uuid) -> Result<EmailPlan, DomainError> {
        let request = self.request(request_id)?;
        if request.delivery != Delivery::Outstanding {
            return Ok(EmailPlan::Nothing);
        }
        let superseded = request.sequence < self.newest_key_request;
        let pending = self.status == AccountStatus::Pending;
        Ok(match request.kind {
            RequestKind::Activation if pending && !superseded => EmailPlan::Activation {
                sequence: request.sequence,
            },
            RequestKind::Activation => EmailPlan::Nothing,
            RequestKind::ExistingEmailNotice => EmailPlan::AlreadyRegistered {
                activation: (pending && !superseded).then_some(request.sequence),
            },
            RequestKind::PasswordReset if self.reset_usable(request_id) => {
                EmailPlan::PasswordReset {
                    sequence: request.sequence,
                }
            }
            RequestKind::PasswordReset => EmailPlan::Nothing,
            RequestKind::PasswordChangedNotice => EmailPlan::PasswordChanged,
        })
    }
}

/// Rebuilds state from a whole stream, in order; versions count from 1.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Option<Account> {
    events
        .into_iter()
        .zip(1..)
        .fold(None, |state, (event, version)| apply(state, event, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid timestamp")
    }

    fn registration() -> Registration {
        Registration {
            account_id: id(1),
            request_id: id(2),
            username: Username::parse("ada").expect("valid username"),
            email: EmailAddress::parse("Ada@Example.com").expect("valid email"),
            password_hash: PasswordHash("$argon2id$hash".into()),
            locale: "en".into(),
            registered_at: at(0),
            address: AddressClaim::Free,
        }
    }

    fn registered() -> Vec<AccountEvent> {
        register(registration())
    }

    fn sent(request: u128) -> AccountEvent {
        AccountEvent::ActivationEmailSent(ActivationEmailSent {
            request_id: id(request),
            sent_at: at(1),
            key: Some(key("fp", 901)),
        })
    }

    fn key(fingerprint: &str, expires: i64) -> IssuedKey {
        IssuedKey {
            fingerprint: fingerprint.into(),
            expires_at: at(expires),
        }
    }

    fn failed(request: u128) -> AccountEvent {
        AccountEvent::ActivationEmailFailed(ActivationEmailFailed {
            request_id: id(request),
            reason: "550 no such mailbox".into(),
            permanent: true,
            attempts: 1,
        })
    }

    fn retry(failed_request: u128, request: u128) -> AccountCommand {
        AccountCommand::RetryEmail {
            failed_request_id: id(failed_request),
            request_id: id(request),
        }
    }

    fn retried(failed_request: u128, request: u128) -> AccountEvent {
        AccountEvent::EmailRetryRequested(EmailRetryRequested {
            request_id: id(request),
            retry_of: id(failed_request),
        })
    }

    fn activated() -> AccountEvent {
        AccountEvent::AccountActivated(AccountActivated {
            request_id: id(2),
            activated_at: at(5),
        })
    }

    fn resend(request: u128) -> AccountEvent {
        AccountEvent::ActivationRequested(ActivationRequested {
            request_id: id(request),
            reason: ActivationReason::Resend,
        })
    }

    /// Given `history`, when `command`, then `expected`.
    fn check(
        history: Vec<AccountEvent>,
        command: AccountCommand,
        expected: Result<Vec<AccountEvent>, DomainError>,
    ) {
        let state = replay(&history);
        assert_eq!(decide(state.as_ref(), command), expected);
    }

    #[test]
    fn registering_records_the_account_and_asks_for_an_activation_email() {
        let events = registered();
        check(
            vec![],
            AccountCommand::Register(registration()),
            Ok(events.clone()),
        );
        let AccountEvent::AccountRegistered(registered) = &events[0] else {
            panic!("first event is the registration");
        };
        assert_eq!(registered.email_canonical, "ada@example.com");
        assert_eq!(registered.email, "Ada@Example.com");
    }

    #[test]
    fn registering_twice_is_refused() {
        check(
            registered(),
            AccountCommand::Register(registration()),
            Err(DomainError::AlreadyExists),
        );
    }

    #[test]
    fn commands_on_a_missing_account_are_refused() {
        check(
            vec![],
            AccountCommand::Activate {
                request_id: id(2),
                at: at(0),
                password_confirmed: false,
            },
            Err(DomainError::NoSuchAccount),
        );
    }

    #[test]
    fn activating_a_pending_account_records_it_once() {
        check(
            registered(),
            AccountCommand::Activate {
                request_id: id(2),
                at: at(5),
                password_confirmed: false,
            },
            Ok(vec![activated()]),
        );
        let mut history = registered();
        history.push(activated());
        check(
            history,
            AccountCommand::Activate {
                request_id: id(2),
                at: at(9),
                password_confirmed: false,
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn recording_a_sent_email_is_idempotent() {
        check(
            registered(),
            AccountCommand::RecordEmailSent {
                request_id: id(2),
                sent_at: at(1),
                key: Some(key("fp", 901)),
            },
            Ok(vec![sent(2)]),
        );
        let mut history = registered();
        history.push(sent(2));
        check(
            history,
            AccountCommand::RecordEmailSent {
                request_id: id(2),
                sent_at: at(2),
                key: Some(key("other", 902)),
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn an_unknown_request_cannot_be_recorded_as_sent() {
        check(
            registered(),
            AccountCommand::RecordEmailFailed {
                request_id: id(99),
                reason: "x".into(),
                permanent: true,
                attempts: 1,
            },
            Err(DomainError::UnknownRequest(id(99))),
        );
    }

    #[test]
    fn a_failure_after_the_email_went_out_is_not_recorded() {
        let mut history = registered();
        history.push(sent(2));
        check(
            history,
            AccountCommand::RecordEmailFailed {
                request_id: id(2),
                reason: "timeout".into(),
                permanent: false,
                attempts: 3,
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn resend_asks_again_only_while_pending() {
        let mut history = registered();
        history.push(sent(2));
        check(
            history,
            AccountCommand::RequestActivation { request_id: id(3) },
            Ok(vec![resend(3)]),
        );
        let mut history = registered();
        history.push(activated());
        check(
            history,
            AccountCommand::RequestActivation { request_id: id(3) },
            Ok(vec![]),
        );
    }

    #[test]
    fn requests_while_an_email_is_outstanding_are_coalesced() {
        // The sign-up's own activation email has not gone out yet.
        check(
            registered(),
            AccountCommand::RequestActivation { request_id: id(3) },
            Ok(vec![]),
        );
        check(
            registered(),
            AccountCommand::RecordSignUpAttempt {
                request_id: id(3),
                at: at(3),
            },
            Ok(vec![]),
        );
        let account = replay(&registered()).expect("account exists");
        assert_eq!(account.outstanding_request(), Some(id(2)));

        let mut history = registered();
        history.push(sent(2));
        let account = replay(&history).expect("account exists");
        assert_eq!(account.outstanding_request(), None);
        assert_eq!(
            account.next_email_allowed_at(chrono::Duration::seconds(60)),
            Some(at(61))
        );
    }

    #[test]
    fn email_plan_sends_each_request_once_and_skips_superseded_ones() {
        let account = replay(&registered()).expect("account exists");
        assert_eq!(
            account.email_plan(id(2)),
            Ok(EmailPlan::Activation { sequence: 2 })
        );

        let mut history = registered();
        history.push(resend(3));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(2)),
            Ok(EmailPlan::Nothing),
            "superseded by the resend"
        );
        assert_eq!(
            account.email_plan(id(3)),
            Ok(EmailPlan::Activation { sequence: 3 })
        );

        history.push(sent(3));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(3)),
            Ok(EmailPlan::Nothing),
            "already sent"
        );
        assert_eq!(
            account.email_plan(id(9)),
            Err(DomainError::UnknownRequest(id(9)))
        );
    }

    #[test]
    fn a_repeated_sign_up_gets_a_notice_with_a_link_only_while_pending() {
        let attempt =
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id: id(4),
                attempted_at: None,
            });
        let mut history = registered();
        history.push(attempt.clone());
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(4)),
            Ok(EmailPlan::AlreadyRegistered {
                activation: Some(3)
            })
        );

        let mut history = registered();
        history.extend([activated(), attempt]);
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(4)),
            Ok(EmailPlan::AlreadyRegistered { activation: None })
        );
    }

    #[test]
    fn state_tracks_version_status_and_last_email() {
        let mut history = registered();
        history.extend([sent(2), activated()]);
        let account = replay(&history).expect("account exists");
        assert_eq!(account.version, 4);
        assert_eq!(account.status, AccountStatus::Active);
        assert_eq!(account.last_email_at, Some(at(1)));
    }

    #[test]
    fn a_failed_activation_email_is_retried_as_a_new_request_that_sends_the_link() {
        let mut history = registered();
        history.push(failed(2));
        let account = replay(&history).expect("account exists");
        assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
        check(history.clone(), retry(2, 3), Ok(vec![retried(2, 3)]));

        history.push(retried(2, 3));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(3)),
            Ok(EmailPlan::Activation { sequence: 4 })
        );
        check(history.clone(), retry(2, 3), Ok(vec![]));
        assert_eq!(
            account.retry_plan(id(2), id(3)),
            Ok(RetryPlan::AlreadyRequested)
        );
    }

    #[test]
    fn a_retry_is_not_needed_once_the_email_is_moot() {
        let mut history = registered();
        history.extend([failed(2), activated()]);
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.retry_plan(id(2), id(3)),
            Ok(RetryPlan::NotNeeded(RetryNotNeeded::AccountActive))
        );
        check(history, retry(2, 3), Ok(vec![]));

        let mut history = registered();
        history.extend([failed(2), resend(4)]);
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.retry_plan(id(2), id(5)),
            Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded))
        );

        let mut history = registered();
        history.push(sent(2));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.retry_plan(id(2), id(5)),
            Ok(RetryPlan::NotNeeded(RetryNotNeeded::AlreadySent))
        );
        check(
            history,
            retry(9, 5),
            Err(DomainError::UnknownRequest(id(9))),
        );
    }

    #[test]
    fn a_failed_notice_is_retried_as_a_notice() {
        let notice =
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id: id(4),
                attempted_at: None,
            });
        let mut history = registered();
        history.extend([activated(), notice, failed(4), retried(4, 5)]);
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(5)),
            Ok(EmailPlan::AlreadyRegistered { activation: None })
        );
    }

    fn contested() -> Registration {
        Registration {
            account_id: id(11),
            request_id: id(12),
            address: AddressClaim::TakesOver(id(1)),
            ..registration()
        }
    }

    fn activate(password_confirmed: bool) -> AccountCommand {
        AccountCommand::Activate {
            request_id: id(12),
            at: at(5),
            password_confirmed,
        }
    }

    #[test]
    fn a_sign_up_for_a_pending_address_supersedes_the_pending_registration() {
        check(
            registered(),
            AccountCommand::Supersede {
                by: id(11),
                at: at(3),
            },
            Ok(vec![AccountEvent::RegistrationSuperseded(
                RegistrationSuperseded {
                    by: id(11),
                    at: at(3),
                },
            )]),
        );
        let mut history = registered();
        history.push(activated());
        check(
            history,
            AccountCommand::Supersede {
                by: id(11),
                at: at(3),
            },
            Err(DomainError::NotPending(AccountStatus::Active)),
        );
        let holder = replay(&registered()).expect("account exists");
        assert_eq!(
            AddressClaim::for_holder(Some(&holder), None),
            AddressClaim::TakesOver(id(1))
        );
        assert_eq!(AddressClaim::for_holder(None, None), AddressClaim::Free);
    }

    #[test]
    fn the_links_of_an_ended_registration_confirm_nothing() {
        let superseded = AccountEvent::RegistrationSuperseded(RegistrationSuperseded {
            by: id(11),
            at: at(3),
        });
        let cancelled = AccountEvent::RegistrationCancelled(RegistrationCancelled {
            request_id: id(2),
            at: at(3),
        });
        let expired = AccountEvent::RegistrationExpired(RegistrationExpired { at: at(3) });
        for (ending, status) in [
            (superseded, AccountStatus::Superseded),
            (cancelled, AccountStatus::Cancelled),
            (expired, AccountStatus::Expired),
        ] {
            assert!(ending.ends_registration());
            let mut history = registered();
            history.push(ending);
            let account = replay(&history).expect("account exists");
            assert_eq!(account.status, status);
            assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
            check(
                history.clone(),
                AccountCommand::Activate {
                    request_id: id(2),
                    at: at(5),
                    password_confirmed: true,
                },
                Err(DomainError::RegistrationEnded(status)),
            );
            check(
                history,
                AccountCommand::RequestActivation { request_id: id(3) },
                Ok(vec![]),
            );
        }
    }

    #[test]
    fn a_contested_registration_is_confirmed_only_with_its_password() {
        let history = register(contested());
        let account = replay(&history).expect("account exists");
        assert!(account.is_contested());
        assert_eq!(account.supersedes, Some(id(1)));
        check(
            history.clone(),
            activate(false),
            Err(DomainError::PasswordRequired),
        );
        check(
            history,
            activate(true),
            Ok(vec![AccountEvent::AccountActivated(AccountActivated {
                request_id: id(12),
                activated_at: at(5),
            })]),
        );
        // An uncontested registration ignores whether a password came along.
        assert!(
            !replay(&registered())
                .expect("account exists")
                .is_contested()
        );
        check(
            registered(),
            AccountCommand::Activate {
                request_id: id(2),
                at: at(5),
                password_confirmed: false,
            },
            Ok(vec![activated()]),
        );
    }

    #[test]
    fn a_sign_up_for_an_owned_address_holds_its_username_without_a_link() {
        let held = Registration {
            address: AddressClaim::OwnedBy {
                owner: id(1),
                supersedes: None,
            },
            account_id: id(11),
            ..registration()
        };
        let events = register(held.clone());
        assert_eq!(events.len(), 1, "no activation request");
        check(vec![], AccountCommand::Register(held), Ok(events.clone()));
        let account = replay(&events).expect("registration exists");
        assert_eq!(account.address_owner, Some(id(1)));
        assert_eq!(account.outstanding_request(), None);
        check(
            events.clone(),
            AccountCommand::RequestActivation { request_id: id(3) },
            Ok(vec![]),
        );
        check(
            events,
            activate(true),
            Err(DomainError::AddressOwnedElsewhere),
        );
    }

    #[test]
    fn this_wasnt_me_cancels_a_pending_registration_once() {
        let cancel = AccountCommand::Cancel {
            request_id: id(2),
            at: at(4),
        };
        let cancelled = AccountEvent::RegistrationCancelled(RegistrationCancelled {
            request_id: id(2),
            at: at(4),
        });
        check(registered(), cancel.clone(), Ok(vec![cancelled.clone()]));
        let mut history = registered();
        history.push(cancelled);
        check(history, cancel.clone(), Ok(vec![]));
        let mut history = registered();
        history.push(activated());
        check(
            history,
            cancel,
            Err(DomainError::NotPending(AccountStatus::Active)),
        );
    }

    #[test]
    fn a_registration_expires_only_when_pending_and_old_enough() {
        let ttl = chrono::Duration::hours(72);
        let expire = |seconds| AccountCommand::Expire {
            at: at(seconds),
            ttl,
        };
        let deadline = ttl.num_seconds();
        check(registered(), expire(deadline - 1), Ok(vec![]));
        check(
            registered(),
            expire(deadline),
            Ok(vec![AccountEvent::RegistrationExpired(
                RegistrationExpired { at: at(deadline) },
            )]),
        );
        let mut history = registered();
        history.push(activated());
        check(history, expire(deadline + 1), Ok(vec![]));
        let mut history = registered();
        history.push(AccountEvent::RegistrationExpired(RegistrationExpired {
            at: at(deadline),
        }));
        check(history, expire(deadline + 9), Ok(vec![]));
    }

    #[test]
    fn a_withheld_email_is_no_longer_outstanding() {
        let withheld = AccountEvent::EmailWithheld(EmailWithheld {
            request_id: id(2),
            reason: "budget".into(),
        });
        check(
            registered(),
            AccountCommand::RecordEmailWithheld {
                request_id: id(2),
                reason: "budget".into(),
            },
            Ok(vec![withheld.clone()]),
        );
        let mut history = registered();
        history.push(withheld);
        let account = replay(&history).expect("account exists");
        assert_eq!(account.outstanding_request(), None);
        assert_eq!(account.email_plan(id(2)), Ok(EmailPlan::Nothing));
        check(
            history,
            AccountCommand::RecordEmailWithheld {
                request_id: id(2),
                reason: "budget".into(),
            },
            Ok(vec![]),
        );
    }

    fn active() -> Vec<AccountEvent> {
        let mut history = registered();
        history.extend([sent(2), activated()]);
        history
    }

    #[test]
    fn an_operator_activates_a_pending_registration_once() {
        let manually = AccountEvent::AccountActivatedManually(AccountActivatedManually {
            activated_at: at(7),
        });
        let command = AccountCommand::ActivateManually { at: at(7) };
        check(registered(), command.clone(), Ok(vec![manually.clone()]));
        let mut history = registered();
        history.push(manually);
        let account = replay(&history).expect("account exists");
        assert_eq!(account.status, AccountStatus::Active);
        assert_eq!(
            account.outstanding_request(),
            None,
            "no link needed any more"
        );
        check(history, command.clone(), Err(DomainError::AlreadyActive));
        let mut expired = registered();
        expired.push(AccountEvent::RegistrationExpired(RegistrationExpired {
            at: at(3),
        }));
        check(
            expired,
            command,
            Err(DomainError::RegistrationEnded(AccountStatus::Expired)),
        );
    }

    #[test]
    fn only_an_active_account_is_blocked_and_only_a_blocked_one_unblocked() {
        let block = AccountCommand::Block {
            reason: "fraud".into(),
            at: at(8),
        };
        let blocked = AccountEvent::AccountBlocked(AccountBlocked {
            reason: "fraud".into(),
            at: at(8),
        });
        check(active(), block.clone(), Ok(vec![blocked.clone()]));
        check(
            registered(),
            block.clone(),
            Err(DomainError::NotActive(AccountStatus::Pending)),
        );
        let mut history = active();
        history.push(blocked);
        assert_eq!(
            replay(&history).expect("account exists").status,
            AccountStatus::Blocked
        );
        check(history.clone(), block, Err(DomainError::AlreadyBlocked));
        // Its old links confirm nothing, and it is not activated again.
        check(
            history.clone(),
            AccountCommand::Activate {
                request_id: id(2),
                at: at(9),
                password_confirmed: true,
            },
            Ok(vec![]),
        );
        let unblocked = AccountEvent::AccountUnblocked(AccountUnblocked { at: at(9) });
        check(
            history.clone(),
            AccountCommand::Unblock { at: at(9) },
            Ok(vec![unblocked.clone()]),
        );
        history.push(unblocked);
        assert_eq!(
            replay(&history).expect("account exists").status,
            AccountStatus::Active
        );
        check(
            history,
            AccountCommand::Unblock { at: at(10) },
            Err(DomainError::NotBlocked),
        );
    }

    fn hash(text: &str) -> PasswordHash {
        PasswordHash(format!("$argon2id${text}"))
    }

    fn reset_requested(request: u128) -> AccountEvent {
        AccountEvent::PasswordResetRequested(PasswordResetRequested {
            request_id: id(request),
        })
    }

    fn reset(request: u128, notice: u128) -> AccountCommand {
        AccountCommand::ResetPassword {
            reset_request_id: id(request),
            password_hash: hash("new"),
            notice_request_id: id(notice),
            at: at(20),
        }
    }

    fn was_reset(request: u128, notice: u128) -> AccountEvent {
        AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Reset,
            password_hash: hash("new"),
            changed_at: at(20),
            reset_request_id: Some(id(request)),
            notice_request_id: Some(id(notice)),
        })
    }

    #[test]
    fn only_an_active_account_may_sign_in() {
        let pending = replay(&registered()).expect("account exists");
        assert_eq!(pending.may_sign_in(), Err(SignInRefused::NotActive));
        let active = replay(&active()).expect("account exists");
        assert_eq!(active.may_sign_in(), Ok(()));
        assert_eq!(active.password_hash, PasswordHash("$argon2id$hash".into()));
    }

    #[test]
    fn a_reset_request_gets_a_reset_link_when_active_and_the_activation_link_when_pending() {
        check(
            active(),
            AccountCommand::RequestPasswordReset { request_id: id(7) },
            Ok(vec![reset_requested(7)]),
        );
        let mut history = registered();
        history.push(sent(2));
        check(
            history,
            AccountCommand::RequestPasswordReset { request_id: id(7) },
            Ok(vec![resend(7)]),
        );
        let mut history = active();
        history.push(reset_requested(7));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(7)),
            Ok(EmailPlan::PasswordReset { sequence: 5 })
        );
    }

    #[test]
    fn a_reset_request_seen_twice_or_while_its_email_is_on_its_way_records_nothing() {
        let mut history = active();
        history.push(reset_requested(7));
        check(
            history.clone(),
            AccountCommand::RequestPasswordReset { request_id: id(7) },
            Ok(vec![]),
        );
        check(
            history.clone(),
            AccountCommand::RequestPasswordReset { request_id: id(8) },
            Ok(vec![]),
        );
        history.push(sent(7));
        check(
            history,
            AccountCommand::RequestPasswordReset { request_id: id(8) },
            Ok(vec![reset_requested(8)]),
        );
    }

    #[test]
    fn a_reset_link_sets_the_password_once() {
        let mut history = active();
        history.extend([reset_requested(7), sent(7)]);
        check(history.clone(), reset(7, 9), Ok(vec![was_reset(7, 9)]));
        history.push(was_reset(7, 9));
        check(
            history.clone(),
            reset(7, 10),
            Err(DomainError::ResetLinkUnusable),
        );
        let account = replay(&history).expect("account exists");
        assert_eq!(account.password_hash, hash("new"));
        assert_eq!(account.email_plan(id(9)), Ok(EmailPlan::PasswordChanged));
    }

    #[test]
    fn a_newer_reset_request_or_a_change_makes_older_links_unusable() {
        let mut history = active();
        history.extend([reset_requested(7), sent(7), reset_requested(8)]);
        check(
            history.clone(),
            reset(7, 9),
            Err(DomainError::ResetLinkUnusable),
        );
        let account = replay(&history).expect("account exists");
        assert_eq!(account.email_plan(id(7)), Ok(EmailPlan::Nothing));

        let mut history = active();
        history.extend([reset_requested(7), sent(7)]);
        let changed = decide(
            replay(&history).as_ref(),
            AccountCommand::ChangePassword {
                password_hash: hash("changed"),
                notice_request_id: id(11),
                at: at(30),
            },
        )
        .expect("an active account may change its password");
        history.extend(changed);
        check(history, reset(7, 9), Err(DomainError::ResetLinkUnusable));
        check(
            registered(),
            reset(2, 9),
            Err(DomainError::ResetLinkUnusable),
        );
    }

    #[test]
    fn a_password_change_needs_an_active_account_and_emails_the_owner() {
        let command = || AccountCommand::ChangePassword {
            password_hash: hash("changed"),
            notice_request_id: id(11),
            at: at(30),
        };
        check(
            registered(),
            command(),
            Err(DomainError::NotActive(AccountStatus::Pending)),
        );
        check(
            active(),
            command(),
            Ok(vec![AccountEvent::PasswordChanged(PasswordChanged {
                reason: PasswordChangeReason::Change,
                password_hash: hash("changed"),
                changed_at: at(30),
                reset_request_id: None,
                notice_request_id: Some(id(11)),
            })]),
        );
    }

    #[test]
    fn a_rehash_replaces_only_the_hash_it_was_made_from_and_emails_nobody() {
        let upgrade = |replaces: &str| AccountCommand::UpgradePasswordHash {
            replaces: hash(replaces),
            password_hash: hash("upgraded"),
            at: at(40),
        };
        let rehashed = AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Rehash,
            password_hash: hash("upgraded"),
            changed_at: at(40),
            reset_request_id: None,
            notice_request_id: None,
        });
        check(active(), upgrade("hash"), Ok(vec![rehashed.clone()]));
        check(active(), upgrade("an older hash"), Ok(vec![]));

        // A rehash is no change: an outstanding reset link keeps working.
        let mut history = active();
        history.extend([reset_requested(7), sent(7), rehashed]);
        check(history, reset(7, 9), Ok(vec![was_reset(7, 9)]));
    }

    #[test]
    fn the_credential_generation_moves_with_a_change_or_reset_never_a_rehash() {
        let generation = |history: &[AccountEvent]| {
            replay(history)
                .expect("account exists")
                .credential_generation()
        };
        let mut history = active();
        let first = generation(&history);
        history.push(AccountEvent::PasswordChanged(PasswordChanged {
            reason: PasswordChangeReason::Rehash,
            password_hash: hash("upgraded"),
            changed_at: at(40),
            reset_request_id: None,
            notice_request_id: None,
        }));
        assert_eq!(generation(&history), first, "a rehash keeps the password");
        history.extend([reset_requested(7), sent(7), was_reset(7, 9)]);
        let after_reset = generation(&history);
        assert_ne!(after_reset, first);
        let changed = decide(
            replay(&history).as_ref(),
            AccountCommand::ChangePassword {
                password_hash: hash("changed"),
                notice_request_id: id(11),
                at: at(50),
            },
        )
        .expect("an active account may change its password");
        history.extend(changed);
        assert_ne!(generation(&history), after_reset);
    }

    #[test]
    fn password_emails_do_not_hold_back_a_sign_up_notice() {
        let mut history = active();
        history.push(reset_requested(7));
        let account = replay(&history).expect("account exists");
        assert_eq!(account.outstanding_request(), None);
        check(
            history,
            AccountCommand::RecordSignUpAttempt {
                request_id: id(8),
                at: at(8),
            },
            Ok(vec![AccountEvent::SignUpAttemptedForExistingEmail(
                SignUpAttemptedForExistingEmail {
                    request_id: id(8),
                    attempted_at: Some(at(8)),
                },
            )]),
        );
    }

    #[test]
    fn a_long_history_keeps_the_newest_settled_requests_only() {
        let mut history = active();
        for n in 0..100 {
            let request = 100 + n;
            history.push(AccountEvent::SignUpAttemptedForExistingEmail(
                SignUpAttemptedForExistingEmail {
                    request_id: id(request),
                    attempted_at: None,
                },
            ));
            history.push(sent(request));
        }
        history.push(reset_requested(7));
        let account = replay(&history).expect("account exists");
        // The 16 newest notices, the activation request (the newest key
        // request is never forgotten), and the outstanding reset request.
        assert_eq!(account.requests.len(), SETTLED_REQUESTS_KEPT + 2);
        assert_eq!(account.email_plan(id(199)), Ok(EmailPlan::Nothing));
        assert_eq!(
            account.email_plan(id(100)),
            Err(DomainError::UnknownRequest(id(100)))
        );
        assert_eq!(
            account.email_plan(id(7)),
            Ok(EmailPlan::PasswordReset {
                sequence: account.version
            })
        );
    }

    #[test]
    fn sign_up_attempts_record_one_notice_per_interval() {
        let attempt = |request: u128, seconds: i64| AccountCommand::RecordSignUpAttempt {
            request_id: id(request),
            at: at(seconds),
        };
        let mut history = active();
        let first = decide(replay(&history).as_ref(), attempt(8, 100)).expect("recorded");
        assert_eq!(first.len(), 1);
        history.extend(first);
        history.push(sent(8));
        // The notice went out; later attempts within the interval merge
        // into it, however many.
        let interval = SIGN_UP_NOTICE_INTERVAL.num_seconds();
        check(history.clone(), attempt(9, 101), Ok(vec![]));
        check(history.clone(), attempt(9, 100 + interval - 1), Ok(vec![]));
        let next = decide(replay(&history).as_ref(), attempt(9, 100 + interval));
        assert!(matches!(
            next.as_deref(),
            Ok([AccountEvent::SignUpAttemptedForExistingEmail(_)])
        ));
        // Attempts recorded before they carried a time never hold one back.
        let mut old = active();
        old.push(AccountEvent::SignUpAttemptedForExistingEmail(
            SignUpAttemptedForExistingEmail {
                request_id: id(8),
                attempted_at: None,
            },
        ));
        old.push(sent(8));
        assert_eq!(
            decide(replay(&old).as_ref(), attempt(9, 101)).map(|events| events.len()),
            Ok(1)
        );
    }

    #[test]
    fn a_sign_up_held_against_an_owned_address_is_superseded_by_the_next_one() {
        let owner = replay(&active()).expect("owner");
        let earlier = Registration {
            address: AddressClaim::for_holder(Some(&owner), None),
            account_id: id(11),
            ..registration()
        };
        let earlier = replay(&register(earlier)).expect("earlier attempt");
        let address = AddressClaim::for_holder(Some(&owner), Some(&earlier));
        assert_eq!(
            address,
            AddressClaim::OwnedBy {
                owner: owner.id,
                supersedes: Some(id(11)),
            }
        );
        let later = register(Registration {
            address,
            account_id: id(12),
            ..registration()
        });
        let later = replay(&later).expect("later attempt");
        assert_eq!(later.address_owner, Some(owner.id));
        assert_eq!(later.supersedes, Some(id(11)));
        assert_eq!(
            decide(
                Some(&earlier),
                AccountCommand::Supersede {
                    by: id(12),
                    at: at(5)
                }
            )
            .map(|events| events.iter().any(AccountEvent::ends_registration)),
            Ok(true)
        );
    }

    #[test]
    fn a_failed_reset_email_is_retried_only_while_its_link_would_work() {
        let mut history = active();
        history.extend([reset_requested(7), failed(7)]);
        check(history.clone(), retry(7, 12), Ok(vec![retried(7, 12)]));
        history.push(retried(7, 12));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.email_plan(id(12)),
            Ok(EmailPlan::PasswordReset { sequence: 7 })
        );
        history.push(reset_requested(13));
        let account = replay(&history).expect("account exists");
        assert_eq!(
            account.retry_plan(id(12), id(14)),
            Ok(RetryPlan::NotNeeded(RetryNotNeeded::Superseded))
        );
    }
}
