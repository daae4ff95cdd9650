//! The account stream's events: the facts Porter records, in the past tense.
//!
//! Names and payload fields are a stored format: events written years ago must
//! still decode. A payload change that old readers could not handle gets a new
//! `schema_version` and an upcaster in [`AccountEvent::decode`], never an edit
//! of what is already stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use uuid::Uuid;

/// A PHC-format password hash. Its `Debug` is redacted so a hash never reaches
/// a log line through a derived `Debug` of the event that carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegistered {
    pub account_id: Uuid,
    pub username: String,
    pub username_canonical: String,
    pub email: String,
    pub email_canonical: String,
    pub password_hash: PasswordHash,
    pub locale: String,
}

/// Why an activation email was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationReason {
    SignUp,
    Resend,
    /// A sign-up attempt with the address of a still-pending account.
    RepeatedSignUp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequested {
    pub request_id: Uuid,
    pub reason: ActivationReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationEmailSent {
    pub request_id: Uuid,
    /// The first 16 hex digits of SHA-256(key): enough to correlate with Redis
    /// and logs, useless for guessing the key. `None` for a notice to an
    /// active account, which carries no link.
    pub key_fingerprint: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationEmailFailed {
    pub request_id: Uuid,
    pub reason: String,
    pub permanent: bool,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountActivated {
    /// The request whose key was confirmed.
    pub request_id: Uuid,
    pub activated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUpAttemptedForExistingEmail {
    pub request_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    AccountRegistered(AccountRegistered),
    ActivationRequested(ActivationRequested),
    ActivationEmailSent(ActivationEmailSent),
    ActivationEmailFailed(ActivationEmailFailed),
    AccountActivated(AccountActivated),
    SignUpAttemptedForExistingEmail(SignUpAttemptedForExistingEmail),
}

/// An event in its stored shape.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: i32,
    pub payload: Value,
}

/// A stored event Porter cannot read. Readers stop on it rather than skip it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?}")]
    UnknownType { event_type: String },
    #[error("unsupported schema version {schema_version} of {event_type}")]
    UnknownVersion {
        event_type: String,
        schema_version: i32,
    },
    #[error("malformed payload of {event_type} v{schema_version}: {source}")]
    MalformedPayload {
        event_type: String,
        schema_version: i32,
        source: serde_json::Error,
    },
}

impl AccountEvent {
    /// The current schema version of every event type.
    pub const SCHEMA_VERSION: i32 = 1;

    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AccountRegistered(_) => "AccountRegistered",
            Self::ActivationRequested(_) => "ActivationRequested",
            Self::ActivationEmailSent(_) => "ActivationEmailSent",
            Self::ActivationEmailFailed(_) => "ActivationEmailFailed",
            Self::AccountActivated(_) => "AccountActivated",
            Self::SignUpAttemptedForExistingEmail(_) => "SignUpAttemptedForExistingEmail",
        }
    }

    /// Events that ask for an email carry their request id, which becomes
    /// the event id and so the job id: one request, one job.
    pub fn request_id(&self) -> Option<Uuid> {
        match self {
            Self::ActivationRequested(e) => Some(e.request_id),
            Self::SignUpAttemptedForExistingEmail(e) => Some(e.request_id),
            _ => None,
        }
    }

    pub fn encode(&self) -> EncodedEvent {
        let payload = match self {
            Self::AccountRegistered(e) => serde_json::to_value(e),
            Self::ActivationRequested(e) => serde_json::to_value(e),
            Self::ActivationEmailSent(e) => serde_json::to_value(e),
            Self::ActivationEmailFailed(e) => serde_json::to_value(e),
            Self::AccountActivated(e) => serde_json::to_value(e),
            Self::SignUpAttemptedForExistingEmail(e) => serde_json::to_value(e),
        }
        // Plain structs of strings, numbers and ids always serialize.
        .unwrap_or(Value::Null);
        EncodedEvent {
            event_type: self.event_type(),
            schema_version: Self::SCHEMA_VERSION,
            payload,
        }
    }

    pub fn decode(
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<Self, DecodeError> {
        fn parse<T: DeserializeOwned>(
            event_type: &str,
            schema_version: i32,
            payload: Value,
        ) -> Result<T, DecodeError> {
            serde_json::from_value(payload).map_err(|source| DecodeError::MalformedPayload {
                event_type: event_type.to_owned(),
                schema_version,
                source,
            })
        }
        let payload = upcast(event_type, schema_version, payload)?;
        let v = Self::SCHEMA_VERSION;
        Ok(match event_type {
            "AccountRegistered" => Self::AccountRegistered(parse(event_type, v, payload)?),
            "ActivationRequested" => Self::ActivationRequested(parse(event_type, v, payload)?),
            "ActivationEmailSent" => Self::ActivationEmailSent(parse(event_type, v, payload)?),
            "ActivationEmailFailed" => Self::ActivationEmailFailed(parse(event_type, v, payload)?),
            "AccountActivated" => Self::AccountActivated(parse(event_type, v, payload)?),
            "SignUpAttemptedForExistingEmail" => {
                Self::SignUpAttemptedForExistingEmail(parse(event_type, v, payload)?)
            }
            other => {
                return Err(DecodeError::UnknownType {
                    event_type: other.to_owned(),
                });
            }
        })
    }
}

/// Brings an older payload up to the current schema version. Every event is at
/// version 1 today, so only the current version is accepted; the first change
/// of a payload adds its `(type, old version)` arm here.
fn upcast(event_type: &str, schema_version: i32, payload: Value) -> Result<Value, DecodeError> {
    if schema_version == AccountEvent::SCHEMA_VERSION {
        Ok(payload)
    } else {
        Err(DecodeError::UnknownVersion {
            event_type: event_type.to_owned(),
            schema_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<AccountEvent> {
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
            }),
            AccountEvent::ActivationRequested(ActivationRequested {
                request_id: id,
                reason: ActivationReason::SignUp,
            }),
            AccountEvent::ActivationEmailSent(ActivationEmailSent {
                request_id: id,
                key_fingerprint: Some("0123456789abcdef".into()),
                sent_at: at,
                expires_at: Some(at),
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
            }),
        ]
    }

    #[test]
    fn every_event_round_trips_through_its_stored_shape() {
        for event in samples() {
            let stored = event.encode();
            let decoded =
                AccountEvent::decode(stored.event_type, stored.schema_version, stored.payload)
                    .expect("decodes");
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn unknown_types_and_versions_are_errors_not_skips() {
        let unknown =
            AccountEvent::decode("AccountDeleted", 1, Value::Null).expect_err("unknown type");
        assert!(unknown.to_string().contains("AccountDeleted"));
        let future =
            AccountEvent::decode("AccountActivated", 9, Value::Null).expect_err("future version");
        assert!(future.to_string().contains("schema version 9"));
        let malformed = AccountEvent::decode("AccountActivated", 1, serde_json::json!({"x": 1}))
            .expect_err("malformed");
        assert!(matches!(malformed, DecodeError::MalformedPayload { .. }));
    }

    #[test]
    fn password_hashes_never_show_in_debug_output() {
        let debug = format!("{:?}", samples()[0]);
        assert!(!debug.contains("argon2id"), "{debug}");
    }
}
