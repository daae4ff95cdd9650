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
    AccountUnblocked, ActivationReason, ActivationRequested, EmailFailed, EmailRetryRequested,
    EmailSent, EmailWithheld, IssuedKey, PasswordChangeReason, PasswordChanged, PasswordHash,
    PasswordResetRequested, RegistrationCancelled, RegistrationExpired, RegistrationSuperseded,
    SignUpAttemptedForExistingEmail,
};

/// Declares the account events once. Each line is a variant, named after
/// the payload struct it carries, and the type string it is stored under:
/// the variant's name unless `as "..."` gives another. The enum, its
/// [`AccountEvent::event_type`], the list of known types and the
/// payload's encoding and decoding all follow from this one list, so a new
/// event is one line here (plus its payload struct) and the match arms the
/// compiler then asks for; its schema version follows from its upcasters
/// (see `codec`).
macro_rules! account_events {
    ($($(#[$meta:meta])* $variant:ident $(as $stored:literal)?,)*) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum AccountEvent {
            $($(#[$meta])* $variant($variant),)*
        }

        impl AccountEvent {
            /// Every event type string Porter writes and reads.
            pub const TYPES: &[&str] = &[$(stored_type!($variant $($stored)?)),*];

            /// The type string the event is stored under.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stored_type!($variant $($stored)?),)*
                }
            }

            /// The payload as JSON, in its current shape.
            fn payload_json(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Self::$variant(payload) => serde_json::to_value(payload),)*
                }
            }

            /// The event of type `event_type` from its payload in the
            /// current shape; `None` for a type Porter does not know.
            fn from_payload_json(
                event_type: &str,
                payload: Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                $(if event_type == stored_type!($variant $($stored)?) {
                    return Some(serde_json::from_value(payload).map(Self::$variant));
                })*
                None
            }
        }
    };
}

/// The stored type string of a line of [`account_events!`].
macro_rules! stored_type {
    ($variant:ident) => {
        stringify!($variant)
    };
    ($variant:ident $stored:literal) => {
        $stored
    };
}

account_events! {
    AccountRegistered,
    ActivationRequested,
    /// Stored as `ActivationEmailSent`, its name from when every email was
    /// an activation email. It records every kind of email; the stored name
    /// stays because stored events are never rewritten, and the events
    /// feed, webhooks and operators' queries know it by that name.
    EmailSent as "ActivationEmailSent",
    /// Stored as `ActivationEmailFailed`, for the reason given at
    /// [`Self::EmailSent`].
    EmailFailed as "ActivationEmailFailed",
    AccountActivated,
    SignUpAttemptedForExistingEmail,
    EmailRetryRequested,
    RegistrationSuperseded,
    RegistrationCancelled,
    RegistrationExpired,
    EmailWithheld,
    AccountActivatedManually,
    AccountBlocked,
    AccountUnblocked,
    PasswordResetRequested,
    PasswordChanged,
}

impl AccountEvent {
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
        codec::schema_version_of_known(self.event_type())
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

    /// One event of each type (and both shapes of `EmailSent`),
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
            AccountEvent::EmailSent(EmailSent {
                request_id: id,
                sent_at: at,
                key: Some(IssuedKey {
                    fingerprint: "0123456789abcdef".into(),
                    expires_at: at,
                }),
            }),
            AccountEvent::EmailSent(EmailSent {
                request_id: id,
                sent_at: at,
                key: None,
            }),
            AccountEvent::EmailFailed(EmailFailed {
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
