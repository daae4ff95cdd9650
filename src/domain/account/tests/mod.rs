//! Unit tests of the account aggregate, one file per concern; the
//! histories and commands they share are built here.

mod credentials;
mod moderation;
mod registration;
mod requests;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AccountCommand, AddressClaim, DomainError, Registration, decide, registration::register, replay,
};
use crate::domain::{
    EmailAddress, Locale, Username,
    events::{
        AccountActivated, AccountEvent, ActivationReason, ActivationRequested, EmailFailed,
        EmailRetryRequested, EmailSent, IssuedKey, PasswordChangeReason, PasswordChanged,
        PasswordHash, PasswordResetRequested,
    },
};

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
        locale: Locale::english(),
        registered_at: at(0),
        address: AddressClaim::Free,
    }
}

fn registered() -> Vec<AccountEvent> {
    register(registration())
}

fn sent(request: u128) -> AccountEvent {
    AccountEvent::EmailSent(EmailSent {
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
    AccountEvent::EmailFailed(EmailFailed {
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

fn active() -> Vec<AccountEvent> {
    let mut history = registered();
    history.extend([sent(2), activated()]);
    history
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
