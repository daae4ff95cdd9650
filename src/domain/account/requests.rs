//! The email-request outbox: every email an account gets starts as a
//! request recorded in its stream, and its delivery (sent, failed,
//! withheld, retried) is recorded against it. The email worker asks
//! [`Account::email_plan`] what a request still needs, so a job that runs
//! twice, or late, sends nothing it should not.
//!
//! Requests for the same email merge into one still on its way, so a
//! burst of resends or repeated sign-ups sends one email, not many.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Account, AccountStatus, DomainError};
use crate::domain::events::{
    AccountEvent, ActivationReason, ActivationRequested, EmailFailed, EmailRetryRequested,
    EmailSent, EmailWithheld, IssuedKey, SignUpAttemptedForExistingEmail,
};

/// What a request in the stream asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum RequestKind {
    Activation,
    ExistingEmailNotice,
    /// A reset link for an active account.
    PasswordReset,
    /// "Your password was changed", after a change or a reset.
    PasswordChangedNotice,
}

/// Where a request's email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Delivery {
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
pub(super) struct Request {
    pub(super) kind: RequestKind,
    /// Stream version of the requesting event; orders key issuance.
    pub(super) sequence: i64,
    pub(super) delivery: Delivery,
}

/// Settled requests an account remembers. A request is looked up after it
/// settled only by a job that ran twice or a repeated operator retry, which
/// come long before this many newer requests settle; an older one is
/// forgotten (a job for it then fails as for an unknown request, sending
/// nothing).
pub(super) const SETTLED_REQUESTS_KEPT: usize = 16;

/// Sign-up attempts with an account's address within this long of the last
/// one recorded add nothing to its stream: anonymous requests may append at
/// most one notice (and its delivery) per interval to someone else's
/// stream, and its owner gets at most one "someone tried to sign up" email
/// per interval from them (within `EMAIL_PER_ADDRESS` as before).
pub const SIGN_UP_NOTICE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::hours(1);

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

impl Account {
    /// A fresh activation email (a resend), for a pending registration
    /// that may be confirmed.
    pub(super) fn request_activation(&self, request_id: Uuid) -> Vec<AccountEvent> {
        if self.outstanding_request().is_some() || !self.may_request_activation() {
            return vec![];
        }
        vec![AccountEvent::ActivationRequested(ActivationRequested {
            request_id,
            reason: ActivationReason::Resend,
        })]
    }

    /// Whether a resend would send this account an activation link: it is
    /// pending and its address is its own (a sign-up held against an
    /// owner's address gets no link).
    pub fn may_request_activation(&self) -> bool {
        self.status == AccountStatus::Pending && self.address_owner.is_none()
    }

    /// Someone signed up again with this account's address, at `at`: a
    /// notice to the owner, at most one per [`SIGN_UP_NOTICE_INTERVAL`].
    pub(super) fn record_sign_up_attempt(
        &self,
        request_id: Uuid,
        at: DateTime<Utc>,
    ) -> Vec<AccountEvent> {
        let noticed_lately = self
            .last_sign_up_notice_at
            .is_some_and(|last| at < last + SIGN_UP_NOTICE_INTERVAL);
        if self.outstanding_request().is_some() || noticed_lately {
            return vec![];
        }
        vec![AccountEvent::SignUpAttemptedForExistingEmail(
            SignUpAttemptedForExistingEmail {
                request_id,
                attempted_at: Some(at),
            },
        )]
    }

    pub(super) fn record_email_sent(
        &self,
        request_id: Uuid,
        sent_at: DateTime<Utc>,
        key: Option<IssuedKey>,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        let request = self.request(request_id)?;
        Ok(if request.delivery == Delivery::Emailed {
            vec![]
        } else {
            vec![AccountEvent::EmailSent(EmailSent {
                request_id,
                sent_at,
                key,
            })]
        })
    }

    /// A failure is recorded only while the email is outstanding: one that
    /// went out (or was given up or withheld) stays as it is.
    pub(super) fn record_email_failed(
        &self,
        request_id: Uuid,
        reason: String,
        permanent: bool,
        attempts: u32,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        let request = self.request(request_id)?;
        Ok(if request.delivery != Delivery::Outstanding {
            vec![]
        } else {
            vec![AccountEvent::EmailFailed(EmailFailed {
                request_id,
                reason,
                permanent,
                attempts,
            })]
        })
    }

    pub(super) fn record_email_withheld(
        &self,
        request_id: Uuid,
        reason: String,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        let request = self.request(request_id)?;
        Ok(if request.delivery == Delivery::Outstanding {
            vec![AccountEvent::EmailWithheld(EmailWithheld {
                request_id,
                reason,
            })]
        } else {
            vec![]
        })
    }

    /// An operator's retry of a failed request, as decided by
    /// [`Self::retry_plan`].
    pub(super) fn retry_email(
        &self,
        failed_request_id: Uuid,
        request_id: Uuid,
    ) -> Result<Vec<AccountEvent>, DomainError> {
        Ok(match self.retry_plan(failed_request_id, request_id)? {
            RetryPlan::Retry => vec![AccountEvent::EmailRetryRequested(EmailRetryRequested {
                request_id,
                retry_of: failed_request_id,
            })],
            RetryPlan::AlreadyRequested | RetryPlan::NotNeeded(_) => vec![],
        })
    }

    pub(super) fn add_request(&mut self, id: Uuid, kind: RequestKind, sequence: i64) {
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
    pub(super) fn forget_old_settled_requests(&mut self) {
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

    pub(super) fn request(&self, request_id: Uuid) -> Result<&Request, DomainError> {
        self.requests
            .get(&request_id)
            .ok_or(DomainError::UnknownRequest(request_id))
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
