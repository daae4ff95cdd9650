//! The account stream's events: the facts Porter records, in the past tense.
//!
//! Names and payload fields are a stored format: events written years ago must
//! still decode. A payload change that old readers could not handle gets a new
//! `schema_version` and an upcaster in [`AccountEvent::decode`], never an edit
//! of what is already stored.
//!
//! `payloads` holds each event's fields; `codec` the stored shape (type
//! name, schema version, JSON payload) and the upcasters that read old
//! versions.

use serde_json::Value;
use uuid::Uuid;

mod codec;
mod payloads;

pub use codec::{DecodeError, EncodeError, EncodedEvent, current_schema_version};
pub use payloads::{
    AccountActivated, AccountActivatedManually, AccountBlocked, AccountRegistered,
    AccountUnblocked, ActivationEmailFailed, ActivationEmailSent, ActivationReason,
    ActivationRequested, EmailRetryRequested, EmailWithheld, IssuedKey, PasswordChangeReason,
    PasswordChanged, PasswordHash, PasswordResetRequested, RegistrationCancelled,
    RegistrationExpired, RegistrationSuperseded, SignUpAttemptedForExistingEmail,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    AccountRegistered(AccountRegistered),
    ActivationRequested(ActivationRequested),
    ActivationEmailSent(ActivationEmailSent),
    ActivationEmailFailed(ActivationEmailFailed),
    AccountActivated(AccountActivated),
    SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail),
    EmailRetryRequested(EmailRetryRequested),
    RegistrationSuperseded(RegistrationSuperseded),
    RegistrationCancelled(RegistrationCancelled),
    RegistrationExpired(RegistrationExpired),
    EmailWithheld(EmailWithheld),
    AccountActivatedManually(AccountActivatedManually),
    AccountBlocked(AccountBlocked),
    AccountUnblocked(AccountUnblocked),
    PasswordResetRequested(PasswordResetRequested),
    PasswordChanged(PasswordChanged),
}

impl AccountEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AccountRegistered(_) => "AccountRegistered",
            Self::ActivationRequested(_) => "ActivationRequested",
            Self::ActivationEmailSent(_) => "ActivationEmailSent",
            Self::ActivationEmailFailed(_) => "ActivationEmailFailed",
            Self::AccountActivated(_) => "AccountActivated",
            Self::SignUpAttemptedForExistingEmail(_) => "SignUpAttemptedForExistingEmail",
            Self::EmailRetryRequested(_) => "EmailRetryRequested",
            Self::RegistrationSuperseded(_) => "RegistrationSuperseded",
            Self::RegistrationCancelled(_) => "RegistrationCancelled",
            Self::RegistrationExpired(_) => "RegistrationExpired",
            Self::EmailWithheld(_) => "EmailWithheld",
            Self::AccountActivatedManually(_) => "AccountActivatedManually",
            Self::AccountBlocked(_) => "AccountBlocked",
            Self::AccountUnblocked(_) => "AccountUnblocked",
            Self::PasswordResetRequested(_) => "PasswordResetRequested",
            Self::PasswordChanged(_) => "PasswordChanged",
        }
    }

    /// Whether this event ends a registration that never became an account.
    /// Its username and email claims are released in the transaction that
    /// appends it, and only there.
    pub fn ends_registration(&self) -> bool {
        matches!(
            self,
            Self::RegistrationSuperseded(_)
                | Self::RegistrationCancelled(_)
                | Self::RegistrationExpired(_)
        )
    }

    /// The schema version [`Self::encode`] writes for this event.
    pub fn schema_version(&self) -> i32 {
        current_schema_version(self.event_type()).unwrap_or(1)
    }

    /// Events that ask for an email carry their request id, which becomes
    /// the event id and so the job id: one request, one job.
    pub fn request_id(&self) -> Option<Uuid> {
        match self {
            Self::ActivationRequested(e) => Some(e.request_id),
            Self::SignUpAttemptedForExistingEmail(e) => Some(e.request_id),
            Self::EmailRetryRequested(e) => Some(e.request_id),
            Self::PasswordResetRequested(e) => Some(e.request_id),
            Self::PasswordChanged(e) => e.notice_request_id,
            _ => None,
        }
    }

    /// The payload in its current shape with every secret removed (password
    /// hashes): what the admin API shows of an event.
    pub fn public_payload(&self) -> Result<Value, EncodeError> {
        let mut payload = self.encode()?.payload;
        if let Value::Object(fields) = &mut payload {
            fields.retain(|name, _| !name.contains("password"));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    /// One event of each type (and both shapes of `ActivationEmailSent`),
    /// for these tests and the codec's.
    pub(super) fn samples() -> Vec<AccountEvent> {
        let id = Uuid::from_u128(7);
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp");
        vec![
            AccountEvent::AccountRegistered(AccountRegistered {
                account_id: id,
                username: "Ada".into(),
                username_canonical: "ada".into(),
                email: "Ada@Example.com".into(),
                email_canonical: "ada@example.com".into(),
                password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                locale: "en".into(),
                registered_at: Some(at),
                supersedes: Some(Uuid::from_u128(6)),
                address_owner: None,
            }),
            AccountEvent::ActivationRequested(ActivationRequested {
                request_id: id,
                reason: ActivationReason::SignUp,
            }),
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: id,
                sent_at: at,
                key: Some(IssuedKey {
                    fingerprint: "0123456789abcdef".into(),
                    expires_at: at,
                }),
            }),
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: id,
                sent_at: at,
                key: None,
            }),
            AccountEvent::ActivationEmailFailed(ActivationEmailFailed {
                request_id: id,
                reason: "550 mailbox unavailable".into(),
                permanent: true,
                attempts: 1,
            }),
            AccountEvent::AccountActivated(AccountActivated {
                request_id: id,
                activated_at: at,
            }),
            AccountEvent::SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail {
                request_id: id,
                attempted_at: Some(at),
            }),
            AccountEvent::EmailRetryRequested(EmailRetryRequested {
                request_id: Uuid::from_u128(8),
                retry_of: id,
            }),
            AccountEvent::RegistrationSuperseded(RegistrationSuperseded {
                by: Uuid::from_u128(9),
                at,
            }),
            AccountEvent::RegistrationCancelled(RegistrationCancelled { request_id: id, at }),
            AccountEvent::RegistrationExpired(RegistrationExpired { at }),
            AccountEvent::EmailWithheld(EmailWithheld {
                request_id: id,
                reason: "address budget spent".into(),
            }),
            AccountEvent::AccountActivatedManually(AccountActivatedManually { activated_at: at }),
            AccountEvent::AccountBlocked(AccountBlocked {
                reason: "chargeback".into(),
                at,
            }),
            AccountEvent::AccountUnblocked(AccountUnblocked { at }),
            AccountEvent::PasswordResetRequested(PasswordResetRequested {
                request_id: Uuid::from_u128(9),
            }),
            AccountEvent::PasswordChanged(PasswordChanged {
                reason: PasswordChangeReason::Reset,
                password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$bmV3".into()),
                changed_at: at,
                reset_request_id: Some(Uuid::from_u128(9)),
                notice_request_id: Some(Uuid::from_u128(10)),
            }),
        ]
    }

    #[test]
    fn password_hashes_never_show_in_debug_output() {
        let samples = samples();
        for event in [&samples[0], &samples[samples.len() - 1]] {
            let debug = format!("{event:?}");
            assert!(!debug.contains("argon2id"), "{debug}");
        }
    }

    #[test]
    fn only_a_change_or_reset_asks_for_an_email() {
        let changed = |reason, notice| {
            AccountEvent::PasswordChanged(PasswordChanged {
                reason,
                password_hash: PasswordHash("$argon2id$x".into()),
                changed_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp"),
                reset_request_id: None,
                notice_request_id: notice,
            })
        };
        let notice = Uuid::from_u128(3);
        assert_eq!(
            changed(PasswordChangeReason::Change, Some(notice)).request_id(),
            Some(notice)
        );
        assert_eq!(
            changed(PasswordChangeReason::Rehash, None).request_id(),
            None
        );
        let stored = changed(PasswordChangeReason::Rehash, None)
            .encode()
            .expect("encodes");
        assert_eq!(stored.payload["reason"], "rehash");
    }

    #[test]
    fn public_payloads_carry_no_password_hash() {
        for event in samples() {
            let public = event.public_payload().expect("encodes").to_string();
            assert!(!public.contains("password"), "{public}");
            assert!(!public.contains("argon2id"), "{public}");
        }
        let registered = samples()[0].public_payload().expect("encodes");
        assert_eq!(registered["username"], "Ada");
    }
}
